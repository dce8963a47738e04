"""Log lines with context: which request, job, chunk or step, attempt, worker and owner a line is about.

The context is a contextvar set once where the work enters the process (a Django middleware for an API
request, Celery's task_prerun for a task, the sweeper's pass) and added to every record by
`ContextFilter`, so no log call has to repeat it. `RENDER_LOG_FORMAT` picks the output: `json` (one JSON
object per line, python-json-logger; the production default, and what CloudWatch Logs and the embedded
metrics read) or `text` (people at `make run`: the same fields appended as key=value).
"""

from __future__ import annotations

import contextvars
import logging
import logging.config
import re
from collections.abc import Iterator
from contextlib import contextmanager

from pythonjsonlogger.json import JsonFormatter

FIELDS = ("request_id", "job_id", "chunk", "step", "attempt", "worker", "owner")
_context: contextvars.ContextVar[dict[str, object]] = contextvars.ContextVar("render_log_context", default={})  # noqa: B039 - never mutated


def current() -> dict[str, object]:
    return dict(_context.get())


def bind(**fields: object) -> None:
    """Add fields to the context of the current request or task (None values are left out)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


@contextmanager
def scope(**fields: object) -> Iterator[None]:
    """A fresh context for one unit of work (a request, a task, a sweep), restored afterwards."""
    token = _context.set({k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        _context.reset(token)


@contextmanager
def within(**fields: object) -> Iterator[None]:
    """The current context plus these fields, for one item of a larger unit of work (the sweeper's)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def start(**fields: object) -> contextvars.Token:
    """Like `scope`, for hooks that begin and end in separate calls (Celery's prerun/postrun); see `end`."""
    return _context.set({k: v for k, v in fields.items() if v is not None})


def end(token: contextvars.Token | None) -> None:
    if token is None:
        _context.set({})
        return
    try:
        _context.reset(token)
    except ValueError:  # set in another context (a thread pool): start afresh
        _context.set({})


class ContextFilter(logging.Filter):
    """Copies the current context onto each record (explicit `extra=` values win).

    Django logs a response's status (`django.request`) after the request's scope has ended: such a record
    gets the context its request kept (`request.log_context`, set by jobs/api/observe.py).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get() or getattr(getattr(record, "request", None), "log_context", None) or {}
        for key, value in context.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message, the context fields and any `extra`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", False)
        super().__init__("{asctime}{levelname}{name}{message}", *args, style="{", **kwargs)

    def add_fields(self, log_record, record, message_dict) -> None:
        super().add_fields(log_record, record, message_dict)
        emf = record.__dict__.get("_aws")  # an embedded-metric document (jobs/adapters/metrics.py)
        if emf is not None:
            log_record["_aws"] = emf


class TextFormatter(logging.Formatter):
    """`time level logger message key=value ...` with the context fields, for people."""

    def __init__(self, *args, **kwargs):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{k}={getattr(record, k)}" for k in FIELDS if getattr(record, k, None) is not None)
        if context:
            head, sep, tail = line.partition("\n")  # keep a traceback below the line
            line = f"{head} [{context}]{sep}{tail}"
        return line


def configure(config: dict) -> None:
    """Django's LOGGING_CONFIG: the LOGGING dict, and Python warnings (Celery's, libraries') as log lines, so
    they are JSON lines too when the logs are."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)


_TRACE_ROOT = re.compile(r"Root=([0-9A-Za-z-]{1,64})")


def request_id_from(trace_header: str | None) -> str | None:
    """The request id of an ALB request: the Root of its `X-Amzn-Trace-Id` (anything else is ignored)."""
    if not trace_header:
        return None
    match = _TRACE_ROOT.search(trace_header[:512])
    return match.group(1) if match else None
