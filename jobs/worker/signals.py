"""Celery hooks of the render worker: log context per message and task, and the heartbeat of each process.

- `task_received` (main process): one line naming the job of a message as it arrives.
- `task_prerun`/`task_postrun` (pool process): the job id (from the message headers, else the task's
  first argument), chunk, attempt, worker id and the submitting request's id are the log context of every
  line the task writes; the process's activity (for its heartbeat) follows the task.
- `worker_process_init`: starts the heartbeat thread of the pool process (jobs/worker/heartbeat.py).
"""

from __future__ import annotations

import logging

from jobs.adapters import logs
from jobs.ports.values import FANOUT_JOB, RENDER_CHUNK, RUN_STEP
from jobs.worker.activity import ACTIVITY
from jobs.worker.identity import worker_id

log = logging.getLogger("render.worker")
_tokens: dict[str, object] = {}


def message_fields(name: str, args, headers) -> dict[str, object]:
    """job_id, chunk and attempt of one of our messages, from its headers and arguments."""
    args = list(args or ())
    fields: dict[str, object] = {"job_id": (headers or {}).get("job_id") or (args[0] if args else None)}
    if name == RENDER_CHUNK and len(args) >= 3:
        fields.update(chunk=args[1], attempt=args[2])
    elif name == FANOUT_JOB and len(args) >= 2:
        fields.update(attempt=args[1])
    elif name == RUN_STEP and len(args) >= 3:
        fields.update(attempt=args[1], step=args[2])
    fields["request_id"] = (headers or {}).get("request_id")
    return fields


def on_task_received(request=None, **_):
    if request is None:
        return
    fields = message_fields(request.name, request.args, getattr(request, "_message", None) and request._message.headers)
    with logs.scope(**fields):
        log.info("received %s %s", request.name, request.id)


def on_task_prerun(task_id=None, task=None, args=None, **_):
    headers = {"job_id": getattr(task.request, "job_id", None), "request_id": getattr(task.request, "request_id", None)}
    fields = message_fields(task.name, args, headers)
    _tokens[task_id] = logs.start(**fields, worker=worker_id())
    ACTIVITY.task_started(job_id=fields.get("job_id"), chunk=fields.get("chunk"), attempt=fields.get("attempt"))


def on_task_postrun(task_id=None, state=None, **_):
    log.info("task done: %s", state)
    ACTIVITY.task_ended()
    logs.end(_tokens.pop(task_id, None))
