"""Push API Gateway events through the real Lambda handler module, without Docker, in one process.

    python local/invoke.py tests/events/http_api_v2_query.json [more.json ...]

Configuration comes from the environment as on Lambda (SEMCACHE_*, OPENAI_*; see template.yaml). Events run in
order in the same process, as warm invocations do, so a repeated event shows a miss and then a hit. Each reply
is printed as one JSON line (EMF metric lines and logs go to stdout/stderr too, as on Lambda).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDLER = ROOT / "functions" / "cache" / "handler.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", nargs="+", type=Path)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("handler", HANDLER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # Lambda's init phase: builds everything once
    for path in args.events:
        reply = module.handler(json.loads(path.read_text()), None)
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
