"""Use cases that change state: submit, fan out, render, assemble, cancel, retry; and API keys."""

from jobs.ports import Clock, RenderContext, TaskQueue
from jobs.services.api_keys import api_key_create, hash_api_key
from jobs.services.assets import AssetStatus, SceneFiles, asset_declare, asset_get
from jobs.services.control import enqueue_work, finish_cancel_if_idle, job_cancel, job_fail, job_retry
from jobs.services.deadletters import dead_letters_fail_jobs
from jobs.services.fanout import job_fanout
from jobs.services.rendering import Outcome, chunk_error, chunk_process
from jobs.services.submit import JobSpec, job_create
from jobs.services.sweeper import sweep

__all__ = [
    "AssetStatus",
    "Clock",
    "JobSpec",
    "Outcome",
    "RenderContext",
    "SceneFiles",
    "TaskQueue",
    "api_key_create",
    "asset_declare",
    "asset_get",
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
