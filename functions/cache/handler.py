"""AWS Lambda entry point: API Gateway (HTTP API payload 2.0, or REST payload 1.0) -> Mangum -> semcache.

Everything is built when this module loads (Lambda's init phase) and reused by warm invocations.
Configuration comes from the environment (SEMCACHE_*), secrets from Secrets Manager or SSM: see template.yaml.
"""

from semcache.serverless import build_handler

handler = build_handler()
