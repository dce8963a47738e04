"""Fixtures and helpers of the service tests: the in-memory fakes, a settable clock, and a message pump."""

from datetime import timedelta

import pytest

from jobs.domain import FrameList, OutputFormat, Priority, Scene
from jobs.services import JobSpec, RenderContext, chunk_process, job_create, job_fanout
from jobs.services.api_keys import SCOPE_HIGH
from tests.conftest import T0
from tests.fakes import (
    FakeResultStore,
    FakeTaskQueue,
    InMemoryJobRepository,
    ScriptedRenderer,
    control,
    scene_files,
    spending,
)

LEASE = 60
RETENTION = timedelta(days=1)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def repo():
    return InMemoryJobRepository()


@pytest.fixture
def queue():
    return FakeTaskQueue()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store():
    return FakeResultStore()


def make_worker(
    repo, store, clock, renderer=None, name="w1", max_attempts=3, notifier=None, queue=None, **overrides
) -> RenderContext:
    """A worker process's RenderContext on the fakes; `overrides` set any other field (grace_left, max_crashes).

    Progress is published on the job at every frame (progress_seconds 0) unless a test says otherwise.
    """
    overrides.setdefault("progress_seconds", 0)
    return RenderContext(
        jobs=control(repo, queue, notifier=notifier, retention=RETENTION),
        store=store,
        renderer=renderer or ScriptedRenderer(),
        clock=clock,
        name=name,
        lease_seconds=LEASE,
        max_attempts=max_attempts,
        **overrides,
    )


def spec(frames=(1, 1), chunk_size=5, priority=Priority.HIGH, name="shot", callback_url=None):
    """`frames`: (first, last), or a frame list as `"1-7x3,10"`."""
    scene = Scene(name=name, width=64, height=32, output_format=OutputFormat.PNG, samples=8)
    listed = FrameList.parse(frames) if isinstance(frames, str) else FrameList.span(*frames)
    return JobSpec(
        scene=scene,
        frame_start=listed.first,
        frame_end=listed.last,
        frame_list=None if listed.contiguous else listed,
        chunk_size=chunk_size,
        priority=priority,
        callback_url=callback_url,
    )


def create(repo, queue, clock, key=None, hooks=None, owner="alice", dry_run=False, **kwargs):
    """job_create as the API calls it: (the job, whether it replays an earlier submit with that key)."""
    return job_create(
        jobs=control(repo, queue),
        owner=owner,
        spec=spec(**kwargs),
        idempotency_key=key,
        now=clock(),
        hooks=hooks,
        scopes=frozenset({SCOPE_HIGH}),
        frame_limit=0,
        scene_files=scene_files(),
        spending=spending(repo),
        dry_run=dry_run,
    )


def submit(repo, queue, clock, key=None, hooks=None, **kwargs):
    return create(repo, queue, clock, key, hooks, **kwargs)[0]


def drain(repo, queue, worker, limit=1000):
    """Deliver every queued message (fan-outs first, as SQS would soon after) until none are left."""
    outcomes = []
    for _ in range(limit):
        if queue.fanouts:
            job_id, attempt, _ = queue.fanouts.pop(0)
            job_fanout(jobs=control(repo, queue), job_id=job_id, attempt=attempt, now=worker.clock())
        elif queue.chunks:
            job_id, index, attempt, _ = queue.chunks.pop(0)
            outcomes.append(chunk_process(ctx=worker, job_id=job_id, index=index, attempt=attempt)[0])
        else:
            return outcomes
    raise AssertionError("queue never drained")
