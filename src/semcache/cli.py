"""The `semcache` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from semcache.core.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `semcache` command."""
    parser = argparse.ArgumentParser(prog="semcache", description="A semantic cache for LLM responses.")
    parser.add_argument("--log-level", default="info")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API (needs the `server` extra: uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    sub.add_parser(
        "create-index",
        help="create the Redis vector index if it is missing (idempotent; run once per new environment)",
    )
    explain = sub.add_parser(
        "explain",
        help="say whether the cache would serve STORED's answer for ASKED, and why (JSON; no Redis or LLM needed)",
    )
    explain.add_argument("stored", nargs="?", help="the question whose answer is stored")
    explain.add_argument("asked", nargs="?", help="the question asked later")
    explain.add_argument(
        "--pairs", metavar="FILE", help='JSON lines of {"stored": ..., "asked": ...} instead ("-": stdin)'
    )
    hash_key = sub.add_parser("hash-key", help="print the sha256 digest to configure for an API key (read from stdin)")
    hash_key.add_argument("key", nargs="?", help="the key (default: read one line from stdin, safer than argv)")
    args = parser.parse_args(argv)
    if args.command == "hash-key":
        from semcache.http.auth import key_digest

        key = args.key if args.key is not None else sys.stdin.readline().strip()
        if not key:
            print("semcache: no key given", file=sys.stderr)
            return 2
        print(key_digest(key))
        return 0

    if args.command == "explain":
        return _explain(args.stored, args.asked, args.pairs)

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "serve":
        import uvicorn

        from semcache.bootstrap import create_app

        try:
            app = create_app()
        except ConfigError as exc:
            print(f"semcache: {exc}", file=sys.stderr)
            return 2
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    elif args.command == "create-index":
        return asyncio.run(_create_index())
    return 0


async def _create_index() -> int:
    from semcache.bootstrap import build_embedder, build_store, load_settings
    from semcache.core.errors import StoreError

    try:
        settings = load_settings()
        store = build_store(settings, build_embedder(settings))
    except ConfigError as exc:
        print(f"semcache: {exc}", file=sys.stderr)
        return 2
    try:
        created = await store.ensure_index()
    except StoreError as exc:
        print(f"semcache: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    print(f"index {store.index_name}: {'created' if created else 'already there'}")
    return 0


def _explain(stored: str | None, asked: str | None, pairs_file: str | None) -> int:
    usage = "semcache explain: give STORED and ASKED, or --pairs FILE"
    pairs: list[tuple[str, str]] = []
    if pairs_file is None:
        if stored is None or asked is None:
            print(usage, file=sys.stderr)
            return 2
        pairs.append((stored, asked))
    else:
        if stored is not None or asked is not None:
            print(usage, file=sys.stderr)
            return 2
        try:
            text = sys.stdin.read() if pairs_file == "-" else Path(pairs_file).read_text(encoding="utf-8")
        except OSError as exc:
            print(f"semcache explain: {exc}", file=sys.stderr)
            return 2
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pairs.append((str(row["stored"]), str(row["asked"])))
            except (ValueError, KeyError, TypeError):
                print(f'semcache explain: line {number}: not an object with "stored" and "asked"', file=sys.stderr)
                return 2
    return asyncio.run(_explain_pairs(pairs))


async def _explain_pairs(pairs: list[tuple[str, str]]) -> int:
    from semcache.bootstrap import build_embedder, build_policy, limit_blas_threads, load_settings
    from semcache.explain import explain

    try:
        settings = load_settings()
        limit_blas_threads()
        embedder, policy = build_embedder(settings), build_policy(settings)
    except ConfigError as exc:
        print(f"semcache: {exc}", file=sys.stderr)
        return 2
    for pair in pairs:
        print(json.dumps(await explain(*pair, embedder=embedder, policy=policy)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
