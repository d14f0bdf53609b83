"""Cold start of the Lambda handler: time to load functions/cache/handler.py, which builds the service (embedder
session, clients, index check), in fresh processes, as Lambda's init phase does. Prints runs, medians and JSON.

    python bench/coldstart.py [--runs 7]

`init_ms` is what Lambda's init phase runs before the first request is handled. The OpenAI SDK is not imported in
it (see semcache/adapters/openai_llm.py): a thread imports it right after; `sdk_ready_after_init_ms` is how long
after init a first miss could still have to wait for it. Needs the embedder files (make models). Starts its own
Redis Stack (bundled) so init includes the real index check; OpenAI is not called, so no server is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _common import ROOT, bundled_redis

PROBE = """
import time
t0 = time.perf_counter()
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)  # what Lambda's init runs: the handler module, which builds everything
t1 = time.perf_counter()
sdk_at_init = "openai" in sys.modules
handler = module.handler
handler.components.llm.preload().join()  # the OpenAI SDK, imported on a thread after init
t2 = time.perf_counter()
assert not sdk_at_init, "the OpenAI SDK was imported during init"
print("COLD " + json.dumps({"init_ms": (t1 - t0) * 1e3, "sdk_ready_after_init_ms": (t2 - t1) * 1e3}))
handler.close()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--build-dir", type=Path, help="load a `sam build` output (x86_64) instead of the venv, as Lambda would"
    )
    parser.add_argument("--python", default=sys.executable, help="the interpreter for --build-dir (3.12)")
    args = parser.parse_args()
    with bundled_redis() as url:
        env = {
            **os.environ,
            "SEMCACHE_REDIS_URL": url,
            "SEMCACHE_MODEL_DIR": str(ROOT / ".local/models"),
            "OPENAI_API_KEY": "sk-bench",
            "SEMCACHE_METRICS_EMF": "true",
        }
        command = [sys.executable, "-c", PROBE, str(ROOT / "functions" / "cache" / "handler.py")]
        if args.build_dir is not None:
            build = args.build_dir.resolve()
            env["PYTHONPATH"] = f"{build / 'CacheFunction'}{os.pathsep}{build / 'EmbedderLayer' / 'python'}"
            env["SEMCACHE_MODEL_DIR"] = str(build / "EmbedderLayer" / "model")
            # -S: only the built folders, no site-packages
            command = [args.python, "-S", "-c", PROBE, str(build / "CacheFunction" / "handler.py")]
        runs = []
        for i in range(args.runs):
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            (line,) = [x for x in out.stdout.splitlines() if x.startswith("COLD ")]
            run = json.loads(line.removeprefix("COLD "))
            runs.append(run)
            print(f"run {i + 1}: " + "  ".join(f"{k} {v:7.1f}" for k, v in run.items()))
        medians = {k: round(statistics.median(r[k] for r in runs), 1) for k in runs[0]}
        print("median: " + "  ".join(f"{k} {v:7.1f}" for k, v in medians.items()))
        source = str(args.build_dir) if args.build_dir else "venv"
        summary = {"benchmark": "coldstart", "source": source, "runs": len(runs), "median": medians}
        print(json.dumps({**summary, "target_init_ms": 1000}))


if __name__ == "__main__":
    main()
