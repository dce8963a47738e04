"""Use cases that change state: submit, fan out, render, assemble, cancel, retry; and API keys."""

from .api_keys import api_key_create, hash_api_key
from .control import enqueue_work, finish_cancel_if_idle, job_cancel, job_fail, job_retry
from .deadletters import dead_letters_fail_jobs
from .fanout import job_fanout
from .ports import Clock, RenderContext, TaskQueue
from .rendering import Outcome, chunk_error, chunk_process
from .submit import JobSpec, job_create
from .sweeper import sweep

__all__ = [
    "Clock",
    "JobSpec",
    "Outcome",
    "RenderContext",
    "TaskQueue",
    "api_key_create",
    "chunk_error",
    "chunk_process",
    "dead_letters_fail_jobs",
    "enqueue_work",
    "finish_cancel_if_idle",
    "hash_api_key",
    "job_cancel",
    "job_create",
    "job_fail",
    "job_fanout",
    "job_retry",
    "sweep",
]
