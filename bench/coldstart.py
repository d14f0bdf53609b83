"""Cold start of the Lambda handler: time to load functions/cache/handler.py, which builds the service (embedder
session, clients, index check), in fresh processes, as Lambda's init phase does. Prints runs, medians and JSON.

    python bench/coldstart.py [--runs 7] [--build-dir .aws-sam/build-x86_64] [--secrets none,sdk,extension]

`init_ms` is what Lambda's init phase runs before the first request is handled. --secrets also times init as
deployed, with the Redis URL and the OpenAI key read from secrets (local/fake_aws_secrets.py answers on loopback,
so the network time to Secrets Manager is not in the figure): `sdk` reads them with boto3 (which the Lambda runtime
provides: here the venv's copy is put after the build on the path), `extension` through the Parameters and Secrets
Lambda Extension's HTTP interface. The modes' runs are interleaved, so they share the machine's noise.

The OpenAI SDK is not imported in init (see semcache/adapters/openai_llm.py): a thread imports it right after;
`sdk_ready_after_init_ms` is how long after init a first miss could still have to wait for it. Needs the embedder
files (make models). Starts its own Redis Stack (bundled) so init includes the real index check; OpenAI is not
called, so no server is needed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from _common import ROOT, bundled_redis, save_result

PROBE = """
import time
t0 = time.perf_counter()
import importlib.util, json, sys, threading
first = {}
class FirstImporter:  # which thread first imports the OpenAI SDK (a few ms of init for every import)
    def find_spec(self, name, path=None, target=None):
        if name == "openai":
            first.setdefault("thread", threading.current_thread())
        return None
sys.meta_path.insert(0, FirstImporter())
spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)  # what Lambda's init runs: the handler module, which builds everything
t1 = time.perf_counter()
print("BOTO " + json.dumps("botocore" in sys.modules))
handler = module.handler
handler.components.llm.preload().join()  # the OpenAI SDK, imported on a thread after init
t2 = time.perf_counter()
# The preload thread starts as init ends and may have begun the import before the handler module returns: what
# matters is that init itself (the main thread) never imports it.
assert first.get("thread") is not threading.main_thread(), "the OpenAI SDK was imported by init itself"
print("COLD " + json.dumps({"init_ms": (t1 - t0) * 1e3, "sdk_ready_after_init_ms": (t2 - t1) * 1e3}))
handler.close()
"""


# The floor: a fresh process that only imports the libraries the handler is made of (the design card fixes them) and
# builds nothing. Timed in the same rounds, so init - floor is what semcache's own code and the session load add.
FLOOR = """
import time
t0 = time.perf_counter()
import fastapi, mangum, numpy, onnxruntime, pydantic_settings, redis.asyncio, tokenizers  # noqa
print("FLOOR " + str((time.perf_counter() - t0) * 1e3))
"""


# What the Lambda runtime has on its path besides the function and its layers (for boto3 in `sdk` mode).
RUNTIME_PACKAGES = ("boto3", "botocore", "jmespath", "s3transfer", "dateutil", "urllib3", "six.py")
TOKEN = "bench-session-token"  # noqa: S105  (a stand-in, checked only by the fake)


@contextlib.contextmanager
def fake_secrets(redis_url: str) -> Iterator[str]:
    """local/fake_aws_secrets.py holding the deployed secrets; yields its URL."""
    values = {"semcache/redis": json.dumps({"url": redis_url}), "semcache/openai": json.dumps({"api_key": "sk-b"})}
    command = [sys.executable, str(ROOT / "local" / "fake_aws_secrets.py"), "--port", "0", "--token", TOKEN]
    command += [f"--secret={name}={value}" for name, value in values.items()]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        assert line.startswith("fake AWS secrets listening on "), line
        yield line.rsplit(" ", 1)[1]
    finally:
        server.terminate()
        server.wait()


def secrets_env(mode: str, url: str) -> dict[str, str]:
    """The environment of a deployed function reading its secrets the given way."""
    if mode == "none":
        return {}
    env = {
        "SEMCACHE_REDIS_URL": "redis://never-used:1/0",
        "OPENAI_API_KEY": "",
        "SEMCACHE_REDIS_URL_SECRET_ARN": "semcache/redis",
        "SEMCACHE_OPENAI_API_KEY_SECRET_ARN": "semcache/openai",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": TOKEN,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    if mode == "sdk":
        return {**env, "AWS_ENDPOINT_URL_SECRETS_MANAGER": url}
    return {**env, "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": url.rsplit(":", 1)[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--build-dir", type=Path, help="load a `sam build` output (x86_64) instead of the venv, as Lambda would"
    )
    parser.add_argument("--python", default=sys.executable, help="the interpreter for --build-dir (3.12)")
    parser.add_argument("--secrets", default="none", help="comma-separated modes: none, sdk, extension")
    args = parser.parse_args()
    modes = args.secrets.split(",")
    if set(modes) - {"none", "sdk", "extension"}:
        parser.error("--secrets: modes are none, sdk and extension")
    with bundled_redis() as url, fake_secrets(url) as secrets_url, tempfile.TemporaryDirectory() as runtime:
        env = {
            **os.environ,
            "SEMCACHE_REDIS_URL": url,
            "SEMCACHE_MODEL_DIR": str(ROOT / ".local/models"),
            "OPENAI_API_KEY": "sk-bench",
            "SEMCACHE_METRICS_EMF": "true",
        }
        command = [sys.executable, "-c", PROBE, str(ROOT / "functions" / "cache" / "handler.py")]
        floor_command = [sys.executable, "-c", FLOOR]
        if args.build_dir is not None:
            build = args.build_dir.resolve()
            import boto3  # the venv's, linked into a folder standing for the runtime's

            site = Path(boto3.__file__).parent.parent
            for name in RUNTIME_PACKAGES:
                if (site / name).exists():
                    (Path(runtime) / name).symlink_to(site / name)
            path = [build / "CacheFunction", build / "EmbedderLayer" / "python", Path(runtime)]
            env["PYTHONPATH"] = os.pathsep.join(map(str, path))
            env["SEMCACHE_MODEL_DIR"] = str(build / "EmbedderLayer" / "model")
            # -S: only the built folders (and the runtime's boto3), no site-packages
            command = [args.python, "-S", "-c", PROBE, str(build / "CacheFunction" / "handler.py")]
            floor_command = [args.python, "-S", "-c", FLOOR]
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
        floors: list[float] = []
        for i in range(args.runs):
            out = subprocess.run(floor_command, env=env, capture_output=True, text=True, check=True)
            floors.append(float(out.stdout.split("FLOOR ")[1]))
            print(f"run {i + 1} floor (imports only): {floors[-1]:7.1f} ms")
            for mode in modes:
                out = subprocess.run(
                    command, env={**env, **secrets_env(mode, secrets_url)}, capture_output=True, text=True
                )
                if out.returncode != 0:
                    sys.exit(f"run {i + 1} ({mode}) failed:\n{out.stderr[-3000:]}")
                (line,) = [x for x in out.stdout.splitlines() if x.startswith("COLD ")]
                boto = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("BOTO "))[5:])
                assert boto == (mode == "sdk"), f"{mode}: boto3 {'' if boto else 'not '}imported at init"
                run = json.loads(line.removeprefix("COLD "))
                runs[mode].append(run)
                print(f"run {i + 1} secrets={mode:9}: " + "  ".join(f"{k} {v:7.1f}" for k, v in run.items()))
        source = str(args.build_dir) if args.build_dir else "venv"
        floor = round(statistics.median(floors), 1)
        result: dict[str, object] = {
            "benchmark": "coldstart",
            "source": source,
            "target_init_ms": 1000,
            "floor_imports_ms": {"median": floor, "runs": floors},
            "modes": {},
        }
        print(f"median floor (a process importing only the libraries): {floor:7.1f} ms")
        for mode in modes:
            medians = {k: round(statistics.median(r[k] for r in runs[mode]), 1) for k in runs[mode][0]}
            medians["init_over_floor_ms"] = round(medians["init_ms"] - floor, 1)
            print(f"median secrets={mode:9}: " + "  ".join(f"{k} {v:7.1f}" for k, v in medians.items()))
            result["modes"][mode] = {"median": medians, "runs": runs[mode]}  # type: ignore[index]
        save_result("coldstart", result)


if __name__ == "__main__":
    main()
