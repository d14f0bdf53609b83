"""AWS Lambda entry point: API Gateway (HTTP API payload 2.0, or REST payload 1.0) -> Mangum -> semcache.

Everything is built when this module loads (Lambda's init phase) and reused by warm invocations.
Configuration comes from the environment (SEMCACHE_*), secrets from Secrets Manager or SSM: see template.yaml.
"""

from semcache.adapters import onnx_embedder
from semcache.settings import Settings

# Start loading the embedder's ONNX session and tokenizer on a thread before the web stack is imported: onnxruntime
# and tokenizers do it without holding the GIL, so the two overlap (about 0.45 s of init). Settings that do not
# parse are reported by build_handler, with the variable to fix; here they only mean no head start.
try:
    settings: Settings | None = Settings()
except ValueError:  # pydantic's ValidationError
    settings = None
if settings is not None:
    onnx_embedder.preload(settings.model_dir / "model.onnx", settings.embed_threads)

from semcache.serverless import build_handler  # after the preload, on purpose

handler = build_handler(settings)
