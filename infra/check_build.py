"""Check a `sam build` output: sizes against Lambda's limit, and (for a build matching this machine) a smoke run.

    python infra/check_build.py [--build-dir .aws-sam/build] [--smoke]

Sizes: the function plus its layers, unzipped, must stay under 250 MB. Smoke: load the built handler with
Python 3.12 and nothing but the built folders on its path (as Lambda has /var/task and /opt/python), then send a
health event through it: this proves the package is complete, not just that it built.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 250 * 1024 * 1024  # Lambda: function and all its layers, unzipped


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


SMOKE = """
import json, pathlib, importlib.util
spec = importlib.util.spec_from_file_location("handler", pathlib.Path({handler!r}))
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
event = json.loads(pathlib.Path({event!r}).read_text())
reply = module.handler(event, None)
print("SMOKE " + json.dumps(reply))
"""


def smoke(build: Path, python: str) -> None:
    function, layer = build / "CacheFunction", build / "EmbedderLayer"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": f"{function}{os.pathsep}{layer / 'python'}",
        "SEMCACHE_MODEL_DIR": str(layer / "model"),
        "SEMCACHE_REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens: the health check must say "degraded"
        "SEMCACHE_REDIS_CONNECT_TIMEOUT_S": "0.2",
        "OPENAI_API_KEY": "sk-smoke",
    }
    code = SMOKE.format(handler=str(function / "handler.py"), event=str(ROOT / "tests/events/http_api_v2_health.json"))
    # -S: no site-packages, so only what the build put in place can be imported.
    out = subprocess.run([python, "-S", "-c", code], env=env, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("SMOKE ")]
    if out.returncode != 0 or not lines:
        sys.exit(f"smoke run of the built handler failed:\n{out.stdout}\n{out.stderr}")
    reply = json.loads(lines[0].removeprefix("SMOKE "))
    body = json.loads(reply["body"])
    if reply["statusCode"] != 200 or body["status"] != "degraded" or body["embedder"]["dim"] != 384:
        sys.exit(f"unexpected smoke reply: {reply}")
    print(f"smoke: the built handler answered GET / with {body['status']!r}, embedder {body['embedder']['id']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    parser.add_argument("--smoke", action="store_true", help="run the built handler (build must match this CPU)")
    parser.add_argument("--python", default="python3.12")
    args = parser.parse_args()
    function, layer = size_of(args.build_dir / "CacheFunction"), size_of(args.build_dir / "EmbedderLayer")
    total = function + layer
    mb = 1024 * 1024
    print(
        f"sizes (unzipped): function {function / mb:.1f} MB + embedder layer {layer / mb:.1f} MB = {total / mb:.1f} MB"
        f" of Lambda's {LIMIT / mb:.0f} MB"
    )
    if total >= LIMIT:
        sys.exit("over Lambda's unzipped size limit")
    if args.smoke:
        smoke(args.build_dir, args.python)


if __name__ == "__main__":
    main()
