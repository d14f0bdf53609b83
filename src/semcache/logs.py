"""JSON log lines for CloudWatch: one object per record, no prompts or answers unless a caller puts them there."""

from __future__ import annotations

import json
import logging
import time


class JsonFormatter(logging.Formatter):
    """level, logger, message and time (plus the exception, if any) as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        document: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "aws_request_id", None)
        if request_id:
            document["request_id"] = request_id
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, separators=(",", ":"))


def configure_json_logging(level: str = "INFO") -> None:
    """Send every record through one handler with the JSON formatter (replacing the runtime's text format)."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())
    root.setLevel(level)
