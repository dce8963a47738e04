"""The render loop on the fakes: claim, frames, retries, takeovers, poison work, assembly and shutdown."""

import json
import time

import pytest

from jobs.domain import JobStatus
from jobs.errors import JobStateConflict, ServiceUnavailable
from jobs.services import Outcome, chunk_error, chunk_process, job_cancel, job_fanout
from jobs.services.selectors import job_chunks, job_result_links, recorded_frames
from tests.fakes import ScriptedRenderer, control
from tests.unit.conftest import LEASE, drain, make_worker, submit


def _dies(j, frame):
    raise KeyboardInterrupt  # stands in for SIGKILL: nothing after this runs


def _fanned_out(repo, queue, clock, frames=(1, 10), chunk_size=5):
    """A job of several chunks whose chunk items exist; no message is left in the queue."""
    job = submit(repo, queue, clock, frames=frames, chunk_size=chunk_size)
    job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=1, now=clock())
    queue.fanouts.clear()
    queue.chunks.clear()
    return job


# --- one-chunk jobs -------------------------------------------------------------------------------


def test_one_frame_job_renders_once_and_keeps_its_result_on_the_item(repo, queue, clock, store):
    job = submit(repo, queue, clock)
    worker = make_worker(repo, store, clock)
    assert drain(repo, queue, worker) == [Outcome.DONE]
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.frames_done == 1 and not done.has_preview
    assert list(store.objects) == [f"jobs/{job.id}/frames/00001.png"]  # one PUT: no manifest, no preview
    assert chunk_process(ctx=worker, job_id=job.id, index=None, attempt=1)[0] is Outcome.SKIPPED


def test_a_one_frame_job_reports_its_seconds_per_frame(repo, queue, clock, store):
    """Bug 6: the job item of a one-chunk job kept no render time, so its chunk showed none."""
    job = submit(repo, queue, clock)
    slow = ScriptedRenderer(on_render=lambda j, f: time.sleep(0.01))
    assert drain(repo, queue, make_worker(repo, store, clock, slow)) == [Outcome.DONE]
    done = repo.get(job.id)
    assert done.render_seconds > 0
    [chunk] = job_chunks(repo=repo, job=done, cursor=None, limit=10).chunks
    assert (chunk.index, chunk.status, chunk.frames_done) == (0, JobStatus.COMPLETED, 1)
    assert chunk.seconds_per_frame is not None and chunk.seconds_per_frame > 0


def test_a_lapsed_lease_is_taken_over_resuming_and_the_old_holder_is_fenced(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 4))
    dying = ScriptedRenderer()

    def die_on_third_frame(j, frame):
        if frame == 3:
            raise KeyboardInterrupt  # stands in for SIGKILL: nothing after this runs

    dying.on_render = die_on_third_frame
    with pytest.raises(KeyboardInterrupt):
        chunk_process(ctx=make_worker(repo, store, clock, dying), job_id=job.id, index=None, attempt=1)
    assert repo.get(job.id).frames_done == 2
    assert (
        chunk_process(ctx=make_worker(repo, store, clock, name="w2"), job_id=job.id, index=None, attempt=1)[0]
        is Outcome.SKIPPED
    )  # lease still live
    clock.advance(LEASE + 1)
    rescuer = ScriptedRenderer()
    rescuing = make_worker(repo, store, clock, rescuer, name="w2")
    assert chunk_process(ctx=rescuing, job_id=job.id, index=None, attempt=1)[0] is Outcome.DONE
    assert rescuer.calls == [3, 4]  # resumed, not redone
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and [r.frame for r in done.results] == [1, 2, 3, 4]
    assert done.crashes == 1  # the takeover counted its dead holder
    manifest = json.loads(store.objects[f"jobs/{job.id}/manifest.json"])
    assert [f["frame"] for f in manifest["frames"]] == [1, 2, 3, 4]
    assert done.has_preview and store.objects[f"jobs/{job.id}/preview.png"].startswith(b"\x89PNG")


def test_render_failures_retry_then_fail_with_the_error(repo, queue, clock, store):
    job = submit(repo, queue, clock)
    worker = make_worker(repo, store, clock, ScriptedRenderer(fail_times=10))
    for expected in ((Outcome.RETRY, 1), (Outcome.RETRY, 2), (Outcome.FAILED, 3)):
        assert chunk_process(ctx=worker, job_id=job.id, index=None, attempt=1) == expected
    failed = repo.get(job.id)
    assert failed.status is JobStatus.FAILED and "boom" in failed.error and failed.render_failures == 3
    assert failed.error_code == "render_failed" and failed.crashes == 0  # released each time: no crash


# --- poison work and errors outside the render ----------------------------------------------------


@pytest.mark.parametrize("multi", [False, True], ids=["one_chunk", "chunk_item"])
def test_a_chunk_whose_holders_died_max_crashes_times_fails_as_poison(repo, queue, clock, store, multi):
    if multi:
        job, index = _fanned_out(repo, queue, clock), 0
    else:
        job, index = submit(repo, queue, clock, frames=(1, 3)), None
    for crash in range(3):
        with pytest.raises(KeyboardInterrupt):
            chunk_process(
                ctx=make_worker(repo, store, clock, ScriptedRenderer(on_render=_dies), name=f"w{crash}"),
                job_id=job.id,
                index=index,
                attempt=1,
            )
        clock.advance(LEASE + 1)
    last = ScriptedRenderer()
    worker = make_worker(repo, store, clock, last, name="last", max_crashes=3)
    assert chunk_process(ctx=worker, job_id=job.id, index=index, attempt=1) == (Outcome.FAILED, 1)
    assert last.calls == []  # not rendered again
    failed = repo.get(job.id)
    assert (failed.status, failed.error_code) == (JobStatus.FAILED, "poison")
    assert "3 times" in failed.error
    if multi:
        assert failed.error.startswith("chunk 0: ")
        chunks = repo.chunks.list(job.id)
        assert [(c.status, c.error_code, c.crashes) for c in chunks] == [
            (JobStatus.FAILED, "poison", 3),
            (JobStatus.CANCELLED, None, 0),  # its idle sibling stops at once
        ]
    else:
        assert failed.crashes == 3


def errored(ctx, **kwargs):
    """chunk_error as the Celery task calls it: with the repository and limits, no renderer."""
    return chunk_error(
        jobs=ctx.jobs,
        now=ctx.clock(),
        max_attempts=ctx.max_attempts,
        max_outage_attempts=ctx.max_outage_attempts,
        **kwargs,
    )


@pytest.mark.parametrize("multi", [False, True], ids=["one_chunk", "chunk_item"])
def test_an_error_outside_the_render_is_a_failed_attempt_and_fails_the_job_without_its_text(
    repo, queue, clock, store, multi
):
    if multi:
        job, index = _fanned_out(repo, queue, clock), 1
    else:
        job, index = submit(repo, queue, clock), None
        queue.chunks.clear()
    secret = "AccessDenied: arn:aws:iam::123456789012:role/render-worker on renderer-host-7"
    ctx = make_worker(repo, None, clock)  # as a worker whose renderer could not be built has it
    for failures in (1, 2):
        assert errored(ctx, job_id=job.id, index=index, attempt=1, error=RuntimeError(secret)) == (
            Outcome.RETRY,
            failures,
        )
        assert repo.get(job.id).status is JobStatus.QUEUED
    assert errored(ctx, job_id=job.id, index=index, attempt=1, error=RuntimeError(secret)) == (
        Outcome.FAILED,
        3,
    )
    failed = repo.get(job.id)
    assert (failed.status, failed.error_code) == (JobStatus.FAILED, "worker_error")
    for leak in (secret, "arn:aws", "123456789012", "renderer-host-7", "AccessDenied"):
        assert leak not in failed.error
    if multi:
        assert failed.error.startswith("chunk 1: ")
        chunks = repo.chunks.list(job.id)
        assert [(c.status, c.error_code) for c in chunks] == [
            (JobStatus.CANCELLED, None),
            (JobStatus.FAILED, "worker_error"),
        ]
        assert secret not in chunks[1].error
    # The job stopped: a later error of the same message is not counted again.
    assert errored(ctx, job_id=job.id, index=index, attempt=1, error=RuntimeError(secret)) == (
        Outcome.SKIPPED,
        0,
    )
    assert queue.chunks == [] and queue.fanouts == []


def test_an_error_outside_the_render_is_not_counted_on_a_chunk_a_live_worker_holds(repo, queue, clock, store):
    job = _fanned_out(repo, queue, clock)
    repo.chunks.claim(job.id, 0, attempt=1, worker="alive", token="t", now=clock(), lease_seconds=LEASE)
    ctx = make_worker(repo, None, clock)
    assert errored(ctx, job_id=job.id, index=0, attempt=1, error=RuntimeError("x")) == (Outcome.SKIPPED, 0)
    held = repo.chunks.list(job.id)[0]
    assert (held.render_failures, held.lease_token) == (0, "t")
    assert repo.get(job.id).status is JobStatus.PROCESSING


def test_siblings_waiting_in_a_retry_delay_are_cancelled_when_a_chunk_runs_out_of_attempts(repo, queue, clock, store):
    """Bug 8: a sibling released for its retry (PROCESSING, no lease token) was left to run on."""
    job = _fanned_out(repo, queue, clock)
    worker = make_worker(repo, store, clock, ScriptedRenderer(fail_times=10), max_attempts=2)
    assert chunk_process(ctx=worker, job_id=job.id, index=1, attempt=1) == (Outcome.RETRY, 1)
    waiting = repo.chunks.list(job.id)[1]
    assert waiting.status is JobStatus.PROCESSING and waiting.lease_token is None
    assert chunk_process(ctx=worker, job_id=job.id, index=0, attempt=1) == (Outcome.RETRY, 1)
    assert chunk_process(ctx=worker, job_id=job.id, index=0, attempt=1) == (Outcome.FAILED, 2)
    assert repo.get(job.id).status is JobStatus.FAILED
    assert [c.status for c in repo.chunks.list(job.id)] == [JobStatus.FAILED, JobStatus.CANCELLED]
    # Its retry message, when it comes, finds nothing to do.
    late = ScriptedRenderer()
    assert chunk_process(ctx=make_worker(repo, store, clock, late), job_id=job.id, index=1, attempt=1)[0] is (
        Outcome.SKIPPED
    )
    assert late.calls == []


# --- jobs of several chunks -------------------------------------------------------------------------


def test_chunks_complete_the_job_once_with_manifest_preview_and_progress(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 12), chunk_size=5)
    seen = []
    renderer = ScriptedRenderer(on_render=lambda j, f: seen.append(repo.get(j.id).frames_done))
    assert drain(repo, queue, make_worker(repo, store, clock, renderer)) == [Outcome.DONE] * 3
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.frames_done == 12 and done.chunks_done == 3
    assert seen == list(range(12))  # progress moved frame by frame
    tasks = repo.chunks.list(job.id)
    assert [(t.frame_start, t.frame_end, t.status) for t in tasks] == [
        (1, 5, JobStatus.COMPLETED),
        (6, 10, JobStatus.COMPLETED),
        (11, 12, JobStatus.COMPLETED),
    ]
    manifest = json.loads(store.objects[f"jobs/{job.id}/manifest.json"])
    assert [f["frame"] for f in manifest["frames"]] == list(range(1, 13))
    assert done.has_preview
    links = job_result_links(store=store, job=done, expires_in=60, offset=10, limit=5)
    assert [f["frame"] for f in links["frames"]] == [11, 12] and links["frames_next_offset"] is None
    assert links["preview_url"].endswith("preview.png?signed")
    assert links["animation_url"].endswith("preview.webp?signed")


def test_a_frame_list_renders_exactly_its_frames_in_chunks_of_the_list(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames="20-24,1-7x3", chunk_size=3)
    assert (str(job.frames), job.frames_total, job.chunks_total) == ("1-7x3,20-24", 8, 3)
    renderer = ScriptedRenderer()
    assert drain(repo, queue, make_worker(repo, store, clock, renderer)) == [Outcome.DONE] * 3
    assert renderer.calls == [1, 4, 7, 20, 21, 22, 23, 24]
    assert [str(t.frames) for t in repo.chunks.list(job.id)] == ["1-7x3", "20-22", "23-24"]
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and (done.frames_done, done.chunks_done) == (8, 3)
    assert sorted(k for k in store.objects if "/frames/" in k) == [
        f"jobs/{job.id}/frames/{n:05d}.png" for n in (1, 4, 7, 20, 21, 22, 23, 24)
    ]
    manifest = json.loads(store.objects[f"jobs/{job.id}/manifest.json"])
    assert manifest["frame_list"] == "1-7x3,20-24" and [f["frame"] for f in manifest["frames"]] == list(job.frames)
    links = job_result_links(store=store, job=done, expires_in=60, offset=2, limit=3)
    assert [f["frame"] for f in links["frames"]] == [7, 20, 21] and links["frames_next_offset"] == 5
    assert done.has_preview


def test_a_one_chunk_list_resumes_at_its_next_listed_frame_after_a_takeover(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames="1-10x3,50", chunk_size=5)
    assert job.single_chunk
    dying = ScriptedRenderer(on_render=lambda j, frame: _dies(j, frame) if frame == 7 else None)
    with pytest.raises(KeyboardInterrupt):
        chunk_process(ctx=make_worker(repo, store, clock, dying), job_id=job.id, index=None, attempt=1)
    clock.advance(LEASE + 1)
    rescuer = ScriptedRenderer()
    assert (
        chunk_process(ctx=make_worker(repo, store, clock, rescuer, name="w2"), job_id=job.id, index=None, attempt=1)[0]
        is Outcome.DONE
    )
    assert dying.calls == [1, 4, 7] and rescuer.calls == [7, 10, 50]
    done = repo.get(job.id)
    assert [r.frame for r in done.results] == [1, 4, 7, 10, 50] and done.progress == 1.0


def test_assembly_runs_once_even_when_two_workers_try(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 4), chunk_size=2)
    drain(repo, queue, make_worker(repo, store, clock))
    puts = store.puts
    # A redelivered message of a finished chunk tries the assembly again: the job is COMPLETED, so no.
    assert (
        chunk_process(ctx=make_worker(repo, store, clock, name="w2"), job_id=job.id, index=1, attempt=1)[0]
        is Outcome.SKIPPED
    )
    assert store.puts == puts and repo.get(job.id).status is JobStatus.COMPLETED
    with pytest.raises(JobStateConflict):
        repo.begin_assembly(job.id, attempt=1, worker="w3", token="t", now=clock(), lease_seconds=LEASE)


# Every frame write is conditional on the job running (a chunk item's write and its publish on the job are
# one transaction), so in both shapes the frame rendering when the cancel came is not recorded or listed.
@pytest.mark.parametrize(
    ("frames", "cancel_at", "kept"), [((1, 3), 2, [1]), ((1, 10), 3, [1, 2, 3])], ids=["one_chunk", "chunks"]
)
def test_the_recorded_frames_of_a_cancelled_job_are_listed(repo, queue, clock, store, frames, cancel_at, kept):
    """Bug 5: a job that did not complete listed no frames, though its good frames are stored."""
    job = submit(repo, queue, clock, frames=frames, chunk_size=5)

    def cancel(j, frame):
        if frame == cancel_at:
            job_cancel(jobs=control(repo), job=repo.get(j.id), now=clock())

    drain(repo, queue, make_worker(repo, store, clock, ScriptedRenderer(on_render=cancel)))
    cancelled = repo.get(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    recorded = recorded_frames(repo=repo, job=cancelled)
    links = job_result_links(store=store, job=cancelled, expires_in=60, recorded=recorded)
    assert [f["frame"] for f in links["frames"]] == kept
    assert all(f["url"].endswith(f"{f['frame']:05d}.png?signed") and f["sha256"] for f in links["frames"])
    assert links["manifest_url"] is None and links["preview_url"] is None and links["frames_next_offset"] is None


# --- worker shutdown ------------------------------------------------------------------------------


@pytest.mark.parametrize("progress_seconds", [0, 100], ids=["frames_recorded", "frames_waiting"])
def test_shutdown_releases_a_chunk_that_will_not_fit_in_the_grace_period(repo, queue, clock, store, progress_seconds):
    """Frames waiting to be recorded (progress_seconds not reached) are recorded before the release."""
    job = submit(repo, queue, clock, frames=(1, 10), chunk_size=5)
    job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=1, now=clock())
    rendered = ScriptedRenderer()
    grace = {"left": None}
    rendered.on_render = lambda j, f: grace.update(left=0.0) if f == 2 else None  # SIGTERM during frame 2
    leaving = make_worker(
        repo,
        store,
        clock,
        rendered,
        name="leaving",
        progress_seconds=progress_seconds,
        grace_left=lambda: grace["left"],
    )
    assert chunk_process(ctx=leaving, job_id=job.id, index=0, attempt=1) == (Outcome.RELEASED, 0)
    assert rendered.calls == [1, 2]
    task = repo.chunks.list(job.id)[0]
    assert task.status is JobStatus.PROCESSING and task.frames_done == 2 and task.lease_token is None
    assert task.render_failures == 0  # a shutdown is no failure
    staying = ScriptedRenderer()
    worker = make_worker(repo, store, clock, staying, name="staying")
    # Claimed at once: the lease was released.
    assert chunk_process(ctx=worker, job_id=job.id, index=0, attempt=1)[0] is Outcome.DONE
    assert staying.calls == [3, 4, 5]
    assert repo.chunks.list(job.id)[0].crashes == 0  # and no crash was counted


def test_shutdown_with_enough_grace_finishes_the_chunk(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 3))
    worker = make_worker(repo, store, clock, name="w", grace_left=lambda: 60.0)
    queue.chunks.clear()
    # No frame timed yet in this run: with no estimate the chunk is handed back at once.
    assert chunk_process(ctx=worker, job_id=job.id, index=None, attempt=1)[0] is Outcome.RELEASED
    roomy = make_worker(
        repo, store, clock, name="w2", grace_left=lambda: None if not repo.get(job.id).frames_done else 60.0
    )
    assert chunk_process(ctx=roomy, job_id=job.id, index=None, attempt=1)[0] is Outcome.DONE


def test_the_worker_id_customers_see_is_opaque():
    import socket

    from jobs.worker.identity import worker_id

    wid = worker_id()
    assert wid.startswith("w-") and len(wid) == 14 and int(wid[2:], 16) >= 0
    assert ":" not in wid and (len(socket.gethostname()) < 4 or socket.gethostname() not in wid)


def test_a_chunk_records_its_frames_in_one_write_every_progress_seconds(repo, queue, clock, store):
    """Frames between writes wait in the worker (they are in S3 already); one write records them all and
    publishes the chunk's progress on the job, which lags by at most progress_seconds plus a frame and is
    exact once the chunk completes. A cancel is noticed at the next write."""
    job = submit(repo, queue, clock, frames=(1, 20), chunk_size=10)
    seen = []

    def one_second_a_frame(j, frame):
        seen.append(repo.get(j.id).frames_done)
        clock.advance(1)

    worker = make_worker(repo, store, clock, ScriptedRenderer(on_render=one_second_a_frame), progress_seconds=2)
    assert drain(repo, queue, worker) == [Outcome.DONE] * 2
    assert seen[:10] == [0, 0, 2, 2, 4, 4, 6, 6, 8, 8]  # chunk 0 wrote at frames 2, 4, 6, 8 and 10
    assert seen[10] == 10  # complete once the chunk is
    assert repo.get(job.id).frames_done == 20 and repo.get(job.id).status is JobStatus.COMPLETED


def test_a_cancel_reaches_a_batching_chunk_at_its_next_write(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 20), chunk_size=10)

    def cancel_at_frame_2(j, frame):
        clock.advance(1)
        if frame == 2:
            job_cancel(jobs=control(repo), job=repo.get(j.id), now=clock())

    worker = make_worker(repo, store, clock, ScriptedRenderer(on_render=cancel_at_frame_2), progress_seconds=2)
    drain(repo, queue, worker)
    assert repo.get(job.id).status is JobStatus.CANCELLED
    assert sorted(store.objects) == [f"jobs/{job.id}/frames/0000{f}.png" for f in (1, 2)]  # written at frame 2


# --- failures of the farm's own services ------------------------------------------------------------


def test_result_storage_down_is_named_and_retried_on_the_longer_ladder_then_fails_the_job(repo, queue, clock, store):
    job = _fanned_out(repo, queue, clock, frames=(1, 10), chunk_size=5)
    store.down_after = 2  # frames 1 and 2 stored, then S3 stops answering
    worker = make_worker(repo, store, clock, max_attempts=2, max_outage_attempts=4)
    for failures in (1, 2, 3):  # past max_attempts (2): an outage is the farm's fault, not the scene's
        assert chunk_process(ctx=worker, job_id=job.id, index=0, attempt=1) == (Outcome.RETRY, failures)
        chunk = repo.chunks.list(job.id)[0]
        assert (chunk.error_code, chunk.error) == (
            "farm_unavailable",
            "could not store frame 3: result storage unavailable",
        )
        assert chunk.frames_done == 2  # the frames stored before the outage are kept for the retry
    assert chunk_process(ctx=worker, job_id=job.id, index=0, attempt=1) == (Outcome.FAILED, 4)
    failed = repo.get(job.id)
    assert (failed.status, failed.error_code) == (JobStatus.FAILED, "farm_unavailable")
    assert failed.error == "chunk 0: could not store frame 3: result storage unavailable"


def test_a_render_failure_keeps_the_shorter_ladder(repo, queue, clock, store):
    job = submit(repo, queue, clock)
    queue.chunks.clear()
    worker = make_worker(repo, store, clock, ScriptedRenderer(fail_times=10), max_attempts=2, max_outage_attempts=8)
    assert chunk_process(ctx=worker, job_id=job.id, index=None, attempt=1) == (Outcome.RETRY, 1)
    assert chunk_process(ctx=worker, job_id=job.id, index=None, attempt=1) == (Outcome.FAILED, 2)
    assert repo.get(job.id).error_code == "render_failed"


def test_job_state_storage_down_outside_the_render_is_named_and_on_the_longer_ladder(repo, queue, clock, store):
    job = submit(repo, queue, clock)
    queue.chunks.clear()
    ctx = make_worker(repo, None, clock, max_attempts=1, max_outage_attempts=2)
    down = ServiceUnavailable("DynamoDB is unreachable; try again shortly.", component="job state storage")
    assert errored(ctx, job_id=job.id, index=None, attempt=1, error=down) == (Outcome.RETRY, 1)
    assert errored(ctx, job_id=job.id, index=None, attempt=1, error=down) == (Outcome.FAILED, 2)
    failed = repo.get(job.id)
    assert (failed.error_code, failed.error) == ("farm_unavailable", "job state storage unavailable")


class WarningRenderer(ScriptedRenderer):
    """Warns (as Blender's setup script does, before any frame) and then renders."""

    def render_chunk(self, job, frames, *, should_stop, log=None):
        log.warn("denoising is off: this farm's Blender has no OpenImageDenoise")
        log.warn("denoising is off: this farm's Blender has no OpenImageDenoise")  # once is enough
        yield from super().render_chunk(job, frames, should_stop=should_stop, log=log)


@pytest.mark.parametrize(("frames", "chunk_size"), [((1, 1), 5), ((1, 4), 2)])
def test_a_renderers_warnings_are_on_the_job_before_it_ends(repo, queue, clock, store, frames, chunk_size):
    job = submit(repo, queue, clock, frames=frames, chunk_size=chunk_size)
    noted_while: list = []
    note = repo.note_warnings

    def spy(job_id, warnings):
        noted_while.append(repo.get(job_id).status)
        note(job_id, warnings)

    repo.note_warnings = spy
    drain(repo, queue, make_worker(repo, store, clock, renderer=WarningRenderer()))
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.warnings == ("denoising is off: this farm's Blender has no OpenImageDenoise",)
    assert noted_while == [JobStatus.PROCESSING]  # once, before the end: a reader of COMPLETED sees them


def test_only_the_last_chunk_to_finish_asks_for_the_assembly_lease(repo, queue, clock, store):
    """Issue 20: each chunk's completion used to try the assembly lease, a conditional write that failed (and
    was billed) for all but the last; now a read of the job's counts comes first."""
    job = submit(repo, queue, clock, frames=(1, 10), chunk_size=2)
    asked = []
    begin = repo.begin_assembly

    def spy(job_id, **kwargs):
        asked.append(job_id)
        return begin(job_id, **kwargs)

    repo.begin_assembly = spy
    drain(repo, queue, make_worker(repo, store, clock))
    assert repo.get(job.id).status is JobStatus.COMPLETED
    assert asked == [job.id]


def test_a_count_run_ahead_of_the_chunks_leaves_the_assembly_to_the_last_chunk(repo, queue, clock, store):
    """A chunk's count on the job can run one ahead of its chunks (a retried count whose first answer was lost
    while another chunk wrote: repository/frames.py). The assembly checks the chunk items first, sets the
    counts from them and gives its lease back; the last chunk's count then assembles the job, once."""
    job = submit(repo, queue, clock, frames=(1, 4), chunk_size=2)
    worker = make_worker(repo, store, clock)
    job_fanout(jobs=control(repo, queue), job_id=job.id, attempt=1, now=clock())
    _, index, _, _ = queue.chunks.pop(0)
    assert chunk_process(ctx=worker, job_id=job.id, index=index, attempt=1)[0] is Outcome.DONE
    repo._put(repo.get(job.id).replace(chunks_done=2, frames_done=4))  # counted once more
    chunk_process(ctx=worker, job_id=job.id, index=index, attempt=1)  # a duplicate: its chunk is done
    held = repo.get(job.id)
    assert held.status is JobStatus.PROCESSING and held.lease_token is None
    assert (held.chunks_done, held.frames_done) == (1, 2)  # set again from the chunk items
    assert drain(repo, queue, worker) == [Outcome.DONE]
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and (done.chunks_done, done.frames_done) == (2, 4)
