"""Tiffin's own log: what an operator watching `tiffin up` sees, as text for people or JSON for machines.

Every deployment event (revisions, rollouts, replicas starting, failing and stopping, status changes,
scaling) is one line (logger `tiffin.events`), as are builds (`tiffin.builds`) and errors. Lines about a
deployment carry it, and its Service where one applies, as fields (`deployment`, `service`) that the
JSON format writes as keys and the text format as a `[deployment/Service]` prefix. Request access logs
(`uvicorn.access` for the API, `tiffin.access` for deployment URLs) stay off unless asked for.
"""

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]
LEVELS = ("debug", "info", "warning", "error")
FORMATS: tuple[LogFormat, ...] = ("text", "json")
ACCESS_LOGGERS = ("uvicorn.access", "tiffin.access")
_FIELDS = ("deployment", "service", "replica", "event")
_CHATTY = ("alembic", "httpx", "httpcore")  # their info lines say nothing an operator acts on


class TextFormatter(logging.Formatter):
    """`2026-11-27T08:00:00.123Z INFO    tiffin.events [demo/Echo] Replica ... is ready.`"""

    def format(self, record: logging.LogRecord) -> str:
        where = "/".join(part for part in (_field(record, "deployment"), _field(record, "service")) if part)
        prefix = f"[{where}] " if where else ""
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name} {prefix}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the deployment fields, the exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({name: value for name in _FIELDS if (value := _field(record, name))})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "info", log_format: LogFormat = "text", access_log: bool = False) -> None:
    """Send every log line to stderr in `log_format` from `level` up; access logs only if asked for."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ACCESS_LOGGERS:
        logging.getLogger(name).disabled = not access_log
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


def _field(record: logging.LogRecord, name: str) -> str:
    value = getattr(record, name, "")
    return str(value) if value else ""


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
