"""A local stand-in for where a Lambda reads its secrets, over real HTTP, for tests and the cold-start benchmark.

    python local/fake_aws_secrets.py --port 0 --token T --secret NAME=VALUE [--secret ssm:/p=VALUE] [--not-ready N]

One port answers both ways semcache reads secrets:
- the AWS Parameters and Secrets Lambda Extension: GET /secretsmanager/get?secretId=NAME and
  GET /systemsmanager/parameters/get?name=/p&withDecryption=true, with the X-Aws-Parameters-Secrets-Token header
  (401 without the right one); the first N requests get its "not ready" reply, as while it starts;
- the Secrets Manager API as boto3 calls it (POST, JSON 1.1, X-Amz-Target secretsmanager.GetSecretValue), for
  AWS_ENDPOINT_URL_SECRETS_MANAGER. Signatures are not checked.
Unknown names answer 400 ResourceNotFoundException. Prints "fake AWS secrets listening on http://127.0.0.1:PORT".
"""

from __future__ import annotations

import argparse
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    server: FakeSecrets

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: str, content_type: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if self.headers.get("X-Aws-Parameters-Secrets-Token") != self.server.token:
            self._reply(401, "missing or wrong X-Aws-Parameters-Secrets-Token", "text/plain")
            return
        with self.server.lock:
            self.server.extension_requests += 1
            if self.server.not_ready > 0:
                self.server.not_ready -= 1
                self._reply(400, "not ready to serve traffic, please wait", "text/plain")
                return
        if url.path == "/secretsmanager/get":
            name = query.get("secretId", "")
            if name in self.server.values:
                self._reply(200, json.dumps(_secret(name, self.server.values[name])))
                return
        elif url.path == "/systemsmanager/parameters/get":
            name = query.get("name", "")
            if f"ssm:{name}" in self.server.values:
                parameter = {"Name": name, "Type": "SecureString", "Value": self.server.values[f"ssm:{name}"]}
                self._reply(200, json.dumps({"Parameter": parameter}))
                return
        else:
            self._reply(404, "no such route", "text/plain")
            return
        self._reply(400, f"ResourceNotFoundException: {name} not found", "text/plain")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if self.headers.get("X-Amz-Target") != "secretsmanager.GetSecretValue":
            self._reply(400, json.dumps({"__type": "UnknownOperationException", "message": "not faked"}))
            return
        name = body.get("SecretId", "")
        with self.server.lock:
            self.server.sdk_requests += 1
        if name not in self.server.values:
            message = "Secrets Manager can't find the specified secret."
            self._reply(400, json.dumps({"__type": "ResourceNotFoundException", "message": message}))
            return
        self._reply(200, json.dumps(_secret(name, self.server.values[name])))


def _secret(name: str, value: str) -> dict[str, Any]:
    return {"ARN": name, "Name": name, "SecretString": value, "VersionId": "v1", "VersionStages": ["AWSCURRENT"]}


class FakeSecrets(ThreadingHTTPServer):
    """The server; its counters tell which way a client read."""

    daemon_threads = True

    def __init__(self, port: int, values: dict[str, str], token: str, not_ready: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.values, self.token, self.not_ready = values, token, not_ready
        self.extension_requests = 0
        self.sdk_requests = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=2773, help="0 picks a free port")
    parser.add_argument("--token", required=True, help="the session token the extension expects")
    parser.add_argument("--secret", action="append", default=[], help="NAME=VALUE (ssm:/name=VALUE for SSM)")
    parser.add_argument("--not-ready", type=int, default=0, help="answer the first N extension requests 'not ready'")
    args = parser.parse_args()
    values = dict(item.split("=", 1) for item in args.secret)
    server = FakeSecrets(args.port, values, args.token, args.not_ready)
    print(f"fake AWS secrets listening on {server.url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
