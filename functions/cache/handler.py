"""AWS Lambda entry point: API Gateway (HTTP API payload 2.0, or REST payload 1.0) -> Mangum -> semcache.

Everything is built when this module loads (Lambda's init phase) and reused by warm invocations.
Configuration comes from the environment (SEMCACHE_*), secrets from Secrets Manager or SSM: see template.yaml.
"""

import os
from pathlib import Path

from semcache.adapters import onnx_embedder

# Start loading the embedder's ONNX session on a thread before the web stack is imported: onnxruntime does it
# without holding the GIL, so the two overlap (about 0.4 s of init). Same variables as semcache.settings; if they
# say otherwise there, the embedder simply builds its own session.
onnx_embedder.preload(
    Path(os.environ.get("SEMCACHE_MODEL_DIR", ".local/models")) / "model.onnx",
    int(os.environ.get("SEMCACHE_EMBED_THREADS", "1")),
)

from semcache.serverless import build_handler  # noqa: E402  (after the preload, on purpose)

handler = build_handler()
