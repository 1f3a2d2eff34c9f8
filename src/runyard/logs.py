"""Log lines: an event name plus fields, as text or as JSON, each with its request's id.

The HTTP layer sets :data:`request_id` when a request starts (see
:mod:`runyard.http.metrics`). A context variable follows the task: trio
copies the context into every task started with ``start_soon`` or ``start``,
so a run's task keeps the id of the request that created it, whatever
request touches the run later, and the writer and recovery tasks, started
with the server, have none. :class:`RequestIdFilter` puts it on each record
as ``request_id``, so any handler that has the filter shows it.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
from typing import Any

# The id of the request whose task (or whose run's task) is running; None outside one.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "runyard_request_id", default=None
)

# The values of the `log_format` and `log_level` settings.
FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
# Attributes every LogRecord has; the rest are the fields a call passed in ``extra``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    """Set ``record.request_id`` (None outside a request) and let the record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
    rid = getattr(record, "request_id", None)
    if rid is not None:
        fields["request_id"] = rid
    return fields


class KeyValueFormatter(logging.Formatter):
    """One line per event: time, level, event name, then key=value fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{self.formatTime(record)} {record.levelname.lower()} {record.getMessage()}"
        if fields:
            line += " " + fields
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, event, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, Any] = {
            "time": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in _fields(record).items():
            line.setdefault(key, value)  # a field never hides one of the four above
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        # A traceback's newlines are escaped: one record is always one line.
        return json.dumps(line, default=str)


def configure(log_format: str = "text", level: str = "info") -> None:
    """Send the ``runyard`` loggers to stderr in ``log_format`` at ``level`` and above."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else KeyValueFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger("runyard")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
