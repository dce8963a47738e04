"""Jobs with steps on the fakes: the encode step after the assembly, its progress, retries, cancel, takeover."""

import dataclasses
import hashlib
import json
from datetime import timedelta

import pytest

from jobs.domain import (
    Encode,
    JobStatus,
    OutputFormat,
    StepStatus,
    VideoFormat,
    steps_problem,
)
from jobs.errors import EncodeError, EncodeRefused, StepsRefused
from jobs.ports import no_log_context
from jobs.presentation import steps_representation
from jobs.services import Outcome, chunk_process, job_cancel, job_create, job_fanout, job_retry
from jobs.services.api_keys import SCOPE_HIGH
from jobs.services.selectors import job_result_links, step_log
from jobs.services.steps import step_error, step_process
from jobs.services.sweep_counts import Swept
from jobs.services.sweeper import sweep
from tests.fakes import FakeEncoder, FakeWebhooks, RecordingNotifier, ScriptedRenderer, control, scene_files, spending
from tests.unit.conftest import LEASE, make_worker, spec

MP4 = Encode(format=VideoFormat.MP4, fps=24)


def submit(repo, queue, clock, *, frames=(1, 6), chunk_size=2, steps=(MP4,), output_format=OutputFormat.PNG):
    base = spec(frames=frames, chunk_size=chunk_size)
    wanted = dataclasses.replace(
        base, steps=tuple(steps), scene=dataclasses.replace(base.scene, output_format=output_format)
    )
    job, _ = job_create(
        jobs=control(repo, queue),
        owner="alice",
        spec=wanted,
        idempotency_key=None,
        now=clock(),
        hooks=FakeWebhooks(),
        scopes=frozenset({SCOPE_HIGH}),
        frame_limit=0,
        scene_files=scene_files(),
        spending=spending(repo),
    )
    return job


def pump(repo, queue, worker, *, steps=True, limit=1000):
    """Deliver every message (fan-outs, chunks, and steps unless told not to) until none is left."""
    outcomes = []
    for _ in range(limit):
        if queue.fanouts:
            job_id, attempt, _ = queue.fanouts.pop(0)
            job_fanout(jobs=control(repo, queue), job_id=job_id, attempt=attempt, now=worker.clock())
        elif queue.chunks:
            job_id, index, attempt, _ = queue.chunks.pop(0)
            outcomes.append(chunk_process(ctx=worker, job_id=job_id, index=index, attempt=attempt)[0])
        elif queue.steps and steps:
            job_id, attempt, index, _ = queue.steps.pop(0)
            outcomes.append(step_process(ctx=worker, job_id=job_id, attempt=attempt, index=index)[0])
        else:
            return outcomes
    raise AssertionError("queue never drained")


def encoder_worker(repo, store, clock, queue, encoder=None, **kwargs):
    encoder = encoder or FakeEncoder()
    return make_worker(repo, store, clock, queue=queue, encoder=lambda: encoder, **kwargs), encoder


def test_the_job_completes_only_once_its_encode_stored_the_video_in_the_manifest(repo, queue, clock, store):
    notifier = RecordingNotifier()
    job = submit(repo, queue, clock)
    assert not job.single_chunk and job.steps[0].status is StepStatus.WAITING
    worker, encoder = encoder_worker(repo, store, clock, queue, notifier=notifier)

    assert pump(repo, queue, worker, steps=False) == [Outcome.DONE] * 3
    assembled = repo.get(job.id)
    assert assembled.status is JobStatus.PROCESSING and assembled.frames_done == 6  # the frames alone end nothing
    assert assembled.steps[0].status is StepStatus.QUEUED and assembled.steps_attempt == 1
    assert queue.steps == [(job.id, 1, 0, job.priority)] and notifier.ended == []
    assert assembled.has_preview and assembled.lease_token is None  # the assembler let go of the job for its step

    assert pump(repo, queue, worker) == [Outcome.DONE]
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and notifier.ended == [(job.id, JobStatus.COMPLETED)]
    step = done.steps[0]
    assert (step.status, step.frames_done, step.failures) == (StepStatus.COMPLETED, 6, 0)
    video = store.objects[f"jobs/{job.id}/video.mp4"]
    artifact = step.artifact
    assert (artifact.size, artifact.sha256) == (len(video), hashlib.sha256(video).hexdigest())
    assert (artifact.frames, artifact.fps, artifact.duration, artifact.content_type) == (6, 24, 0.25, "video/mp4")
    manifest = json.loads(store.objects[f"jobs/{job.id}/manifest.json"])
    assert manifest["steps"] == [{"step": 0, "type": "encode", **artifact.as_dict()}]
    [call] = encoder.calls
    assert (call["count"], call["extension"], call["format"], call["fps"]) == (6, "png", VideoFormat.MP4, 24)
    [link] = job_result_links(store=store, job=done, expires_in=60)["videos"]
    assert link["url"].endswith("video.mp4?signed") and link["sha256"] == artifact.sha256 and link["duration"] == 0.25
    assert "fake ffmpeg: 6 frames" in step_log(store=store, job=done, step=0)["log"]
    [shown] = steps_representation(done)
    assert shown["status"] == "COMPLETED" and shown["progress"] == {"frames_done": 6, "frames_total": 6, "ratio": 1.0}
    # A duplicate of the step's message finds it done and changes nothing.
    puts = store.puts
    assert step_process(ctx=worker, job_id=job.id, attempt=1, index=0)[0] is Outcome.SKIPPED
    assert store.puts == puts and notifier.ended == [(job.id, JobStatus.COMPLETED)]


def test_the_encode_takes_the_frames_in_the_manifests_order(repo, queue, clock, store):
    job = submit(repo, queue, clock, frames=(1, 4))
    worker, encoder = encoder_worker(repo, store, clock, queue)
    pump(repo, queue, worker, steps=False)
    key = f"jobs/{job.id}/manifest.json"
    manifest = json.loads(store.objects[key])
    manifest["frames"] = [manifest["frames"][i] for i in (2, 0, 3)]  # a list of frames, not a range
    store.objects[key] = json.dumps(manifest).encode()
    encoder_count = len(manifest["frames"])
    step_process(ctx=worker, job_id=job.id, attempt=1, index=0)
    expected = [store.objects[f"jobs/{job.id}/frames/{n:05d}.png"] for n in (3, 1, 4)]
    assert encoder.calls[0]["frames"] == expected and encoder.calls[0]["count"] == encoder_count
    assert repo.get(job.id).steps[0].artifact.frames == 3


def test_encode_failures_retry_with_their_error_then_fail_the_job_with_a_readable_reason(repo, queue, clock, store):
    notifier = RecordingNotifier()
    job = submit(repo, queue, clock)
    worker, _ = encoder_worker(repo, store, clock, queue, FakeEncoder(fail_times=3), notifier=notifier)
    pump(repo, queue, worker, steps=False)
    outcomes = [step_process(ctx=worker, job_id=job.id, attempt=1, index=0) for _ in range(3)]
    assert outcomes == [(Outcome.RETRY, 1), (Outcome.RETRY, 2), (Outcome.FAILED, 3)]
    failed = repo.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.error_code == "encode_failed"
    assert failed.error == "step 0, encode (mp4, 24 fps): ffmpeg failed (exit 1): [libx264] boom"
    assert (failed.steps[0].status, failed.steps[0].failures) == (StepStatus.FAILED, 3)
    assert notifier.ended == [(job.id, JobStatus.FAILED)] and f"jobs/{job.id}/video.mp4" not in store.objects
    assert "fake ffmpeg" in step_log(store=store, job=failed, step=0)["log"]


def test_frames_too_large_for_a_video_fail_the_job_at_once_without_retries(repo, queue, clock, store):
    job = submit(repo, queue, clock)
    worker, encoder = encoder_worker(repo, store, clock, queue, FakeEncoder(max_input_bytes=10))
    pump(repo, queue, worker, steps=False)
    assert step_process(ctx=worker, job_id=job.id, attempt=1, index=0) == (Outcome.FAILED, 1)
    failed = repo.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.error_code == "encode_refused"
    assert failed.error.startswith("step 0, encode (mp4, 24 fps): The job's 6 frames are ")
    assert encoder.calls == []


def test_a_failed_attempt_is_released_and_the_retry_completes(repo, queue, clock, store):
    job = submit(repo, queue, clock)
    worker, _ = encoder_worker(repo, store, clock, queue, FakeEncoder(fail_times=1))
    pump(repo, queue, worker, steps=False)
    assert step_process(ctx=worker, job_id=job.id, attempt=1, index=0) == (Outcome.RETRY, 1)
    released = repo.get(job.id)
    assert released.lease_token is None and released.steps[0].error.startswith("ffmpeg failed")
    assert step_process(ctx=worker, job_id=job.id, attempt=1, index=0) == (Outcome.DONE, 0)
    assert repo.get(job.id).status is JobStatus.COMPLETED and repo.get(job.id).steps[0].failures == 1


def test_a_frame_that_is_not_the_one_rendered_fails_the_encode(repo, queue, clock, store):
    job = submit(repo, queue, clock)
    worker, _ = encoder_worker(repo, store, clock, queue, max_attempts=1)
    pump(repo, queue, worker, steps=False)
    store.objects[f"jobs/{job.id}/frames/00003.png"] = b"not the frame"
    assert step_process(ctx=worker, job_id=job.id, attempt=1, index=0)[0] is Outcome.FAILED
    failed = repo.get(job.id)
    assert failed.status is JobStatus.FAILED and "Frame 3 differs from the one rendered" in failed.error


def test_a_cancel_during_the_encode_stops_it_and_the_job_ends_cancelled(repo, queue, clock, store):
    notifier = RecordingNotifier()
    job = submit(repo, queue, clock)
    jobs = control(repo, queue, notifier=notifier)

    def cancel_at_third(n):
        if n == 3:
            assert job_cancel(jobs=jobs, job=repo.get(job.id), now=clock()).status is JobStatus.CANCELLING

    worker, _ = encoder_worker(repo, store, clock, queue, FakeEncoder(on_frame=cancel_at_third), notifier=notifier)
    pump(repo, queue, worker, steps=False)
    assert step_process(ctx=worker, job_id=job.id, attempt=1, index=0)[0] is Outcome.STOPPED
    cancelled = repo.get(job.id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.lease_token is None
    assert cancelled.steps[0].status is StepStatus.CANCELLED and cancelled.steps[0].frames_done == 2
    assert notifier.ended == [(job.id, JobStatus.CANCELLED)]
    assert f"jobs/{job.id}/video.mp4" not in store.objects
    assert (
        "steps" not in json.loads(store.objects[f"jobs/{job.id}/manifest.json"])
        or not json.loads(store.objects[f"jobs/{job.id}/manifest.json"])["steps"]
    )


def test_a_cancel_before_the_step_starts_cancels_at_once_and_its_message_is_dropped(repo, queue, clock, store):
    job = submit(repo, queue, clock)
    worker, encoder = encoder_worker(repo, store, clock, queue)
    pump(repo, queue, worker, steps=False)
    assert job_cancel(jobs=control(repo, queue), job=repo.get(job.id), now=clock()).status is JobStatus.CANCELLED
    assert pump(repo, queue, worker) == [Outcome.SKIPPED] and encoder.calls == []
    [shown] = steps_representation(repo.get(job.id))
    assert shown["status"] == "CANCELLED"


def test_a_dead_encoders_step_is_taken_over_once_its_lease_lapses_and_the_sweeper_resends_it(repo, queue, clock, store):
    job = submit(repo, queue, clock)

    def dies(n):
        if n == 2:
            raise KeyboardInterrupt  # stands in for SIGKILL: nothing after this runs

    doomed, _ = encoder_worker(repo, store, clock, queue, FakeEncoder(on_frame=dies))
    pump(repo, queue, doomed, steps=False)
    queue.steps.clear()  # the dead worker's message: back only after its visibility timeout (below: the sweeper)
    with pytest.raises(KeyboardInterrupt):
        step_process(ctx=doomed, job_id=job.id, attempt=1, index=0)
    held = repo.get(job.id)
    assert held.lease_token and held.steps[0].status is StepStatus.PROCESSING

    rescuer, encoder = encoder_worker(repo, store, clock, queue, name="w2")
    outcome, wait = step_process(ctx=rescuer, job_id=job.id, attempt=1, index=0)
    assert outcome is Outcome.HELD and 0 < wait <= LEASE + 1  # a live lease: looked at again once it lapses
    hooks = FakeWebhooks()
    swept = sweep(jobs=control(repo, queue), hooks=hooks, now=clock(), queued_grace=timedelta(seconds=300),
                  log_context=no_log_context)  # fmt: skip
    assert queue.steps == []  # not due yet (within the grace period of its marker, set when the steps began)

    clock.advance(300 + 1)  # past the grace period, and the dead holder's lease has lapsed
    swept = sweep(jobs=control(repo, queue), hooks=hooks, now=clock(), queued_grace=timedelta(seconds=300),
                  log_context=no_log_context)  # fmt: skip
    assert swept[Swept.STEP_REQUEUED] == 1 and queue.steps == [(job.id, 1, 0, job.priority)]
    assert pump(repo, queue, rescuer) == [Outcome.DONE]
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.steps[0].crashes == 1 and len(encoder.calls) == 1


def test_a_step_that_keeps_killing_its_workers_fails_as_poison(repo, queue, clock, store):
    job = submit(repo, queue, clock)
    worker, encoder = encoder_worker(repo, store, clock, queue, max_crashes=2)
    pump(repo, queue, worker, steps=False)

    def dies(n):
        raise KeyboardInterrupt

    encoder.on_frame = dies
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            step_process(ctx=worker, job_id=job.id, attempt=1, index=0)
        clock.advance(LEASE + 1)
    assert step_process(ctx=worker, job_id=job.id, attempt=1, index=0)[0] is Outcome.FAILED
    failed = repo.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.error_code == "poison" and failed.steps[0].crashes == 2


def test_retry_after_an_encode_failure_renders_no_frame_again_and_runs_the_step(repo, queue, clock, store):
    job = submit(repo, queue, clock)
    renderer = ScriptedRenderer()
    worker, _ = encoder_worker(repo, store, clock, queue, FakeEncoder(fail_times=1), renderer=renderer, max_attempts=1)
    assert pump(repo, queue, worker) == [Outcome.DONE] * 3 + [Outcome.FAILED]
    assert repo.get(job.id).status is JobStatus.FAILED
    rendered = list(renderer.calls)

    retried = job_retry(jobs=control(repo, queue), job=repo.get(job.id), now=clock(), scene_files=scene_files())
    [shown] = steps_representation(retried)
    assert retried.status is JobStatus.QUEUED and shown["status"] == "WAITING" and shown["error"] is None
    # Every chunk is kept: the fan-out sends one chunk message, whose claim starts the job and runs the assembly.
    assert pump(repo, queue, worker) == [Outcome.SKIPPED, Outcome.DONE]
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.attempt == 2 and renderer.calls == rendered
    assert (done.steps[0].status, done.steps[0].attempt, done.steps[0].failures) == (StepStatus.COMPLETED, 2, 0)


def test_two_steps_run_one_after_the_other(repo, queue, clock, store):
    webm = Encode(format=VideoFormat.WEBM, fps=12)
    job = submit(repo, queue, clock, steps=(MP4, webm))
    worker, encoder = encoder_worker(repo, store, clock, queue)
    pump(repo, queue, worker, steps=False)
    queue.steps.clear()  # delivered by hand:
    assert step_process(ctx=worker, job_id=job.id, attempt=1, index=0)[0] is Outcome.DONE
    between = repo.get(job.id)
    assert between.status is JobStatus.PROCESSING and [s.status for s in between.steps] == [
        StepStatus.COMPLETED,
        StepStatus.QUEUED,
    ]
    assert pump(repo, queue, worker) == [Outcome.DONE]
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and {f"jobs/{job.id}/video.mp4", f"jobs/{job.id}/video.webm"} <= set(
        store.objects
    )
    manifest = json.loads(store.objects[f"jobs/{job.id}/manifest.json"])
    assert [(e["step"], e["content_type"], e["fps"]) for e in manifest["steps"]] == [
        (0, "video/mp4", 24),
        (1, "video/webm", 12),
    ]
    assert [c["format"] for c in encoder.calls] == [VideoFormat.MP4, VideoFormat.WEBM]


def test_an_error_outside_the_step_counts_then_fails_the_step_and_the_job(repo, queue, clock, store):
    notifier = RecordingNotifier()
    job = submit(repo, queue, clock)
    worker, _ = encoder_worker(repo, store, clock, queue)
    pump(repo, queue, worker, steps=False)
    jobs = control(repo, queue, notifier=notifier)
    error = RuntimeError("the worker cannot build its encoder")
    args = {"jobs": jobs, "job_id": job.id, "attempt": 1, "index": 0, "error": error, "now": clock()}
    assert step_error(**args, max_attempts=2, max_outage_attempts=8) == (Outcome.RETRY, 1)
    assert step_error(**args, max_attempts=2, max_outage_attempts=8) == (Outcome.FAILED, 2)
    failed = repo.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.error_code == "worker_error"
    assert failed.steps[0].status is StepStatus.FAILED and notifier.ended == [(job.id, JobStatus.FAILED)]


def test_a_worker_without_an_encoder_fails_the_attempt_clearly(repo, queue, clock, store):
    job = submit(repo, queue, clock)
    worker = make_worker(repo, store, clock, queue=queue, max_attempts=1)
    pump(repo, queue, worker, steps=False)
    assert step_process(ctx=worker, job_id=job.id, attempt=1, index=0)[0] is Outcome.FAILED
    assert "No video encoder (ffmpeg) is available on this worker" in repo.get(job.id).error


def test_steps_are_refused_where_they_cannot_run():
    png, exr = OutputFormat.PNG, OutputFormat.EXR
    assert steps_problem([MP4], output_format=png, frames=48) is None
    assert "OpenEXR" in steps_problem([MP4], output_format=exr, frames=48)
    assert "One encode per format" in steps_problem([MP4, MP4], output_format=png, frames=48)
    assert "at least 2 frames" in steps_problem([MP4], output_format=png, frames=1)
    assert steps_problem([MP4], output_format=png, frames=None) is None  # the file's range: checked once known
    assert "at most 4 steps" in steps_problem([MP4] * 5, output_format=png, frames=48)


def test_a_one_frame_job_with_an_encode_is_refused_at_submit(repo, queue, clock):
    with pytest.raises(StepsRefused) as refused:
        submit(repo, queue, clock, frames=(1, 1))
    assert refused.value.status_code == 400 and refused.value.code == "invalid"
    assert list(refused.value.details) == ["steps"] and repo.jobs == {}


def test_an_encode_error_is_shown_to_the_customer_as_encode_failed():
    from jobs.services.steps import describe_step

    assert describe_step(EncodeError("ffmpeg failed (exit 1): x")).code == "encode_failed"
    assert describe_step(EncodeRefused("The encode took longer than 3600 s")).code == "encode_refused"


def test_at_shutdown_an_encode_that_will_not_fit_is_released_uncounted_and_one_that_fits_finishes(
    repo, queue, clock, store
):
    job = submit(repo, queue, clock)
    pump(repo, queue, encoder_worker(repo, store, clock, queue)[0], steps=False)
    queue.steps.clear()
    leaving, _ = encoder_worker(repo, store, clock, queue, grace_left=lambda: 0.0)
    assert step_process(ctx=leaving, job_id=job.id, attempt=1, index=0) == (Outcome.RELEASED, 0)
    released = repo.get(job.id)
    assert released.lease_token is None and released.steps[0].failures == 0 and released.steps[0].crashes == 0
    assert f"jobs/{job.id}/video.mp4" not in store.objects

    # SIGTERM comes at the third frame, with a minute of grace: the rest (at the rate so far) fits.
    grace = {"left": None}
    encoder = FakeEncoder(on_frame=lambda n: grace.update(left=60.0) if n == 3 else None)
    staying, _ = encoder_worker(repo, store, clock, queue, encoder, name="w2", grace_left=lambda: grace["left"])
    assert step_process(ctx=staying, job_id=job.id, attempt=1, index=0) == (Outcome.DONE, 0)
    done = repo.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.steps[0].failures == 0 and done.steps[0].crashes == 0
