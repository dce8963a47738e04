"""`frames` in POST /api/jobs, in-process against the emulator: the refusals (one error shape, the field named)
and what an accepted frame list looks like on the job, its tasks and its owner's usage."""

import hashlib

import pytest
from rest_framework.test import APIClient

from jobs import wiring
from jobs.domain import MAX_FRAME_LIST, MAX_FRAMES_PER_JOB
from tests.integration.test_api import assert_error, key_for, post
from tests.integration.test_assets import declare, put

BODY = {"scene": "shot_010", "width": 320, "height": 180}


@pytest.fixture
def client(emulator):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key_for('frank')}")
    return api


@pytest.mark.parametrize(
    ("frames", "says"),
    [
        ("", "Give at least one frame"),
        ("  ", "Give at least one frame"),
        ("1,,5", "Item 2 of the frame list is empty"),
        ("1-10,", "Item 2 of the frame list is empty"),
        ("1-10y2", '"1-10y2" is not a frame ("150"), a range ("1-100") or a range with a step ("1-100x2").'),
        ("ten", '"ten" is not a frame'),
        ("1-10x0", '"1-10x0": the step must be 1 or more.'),
        ("1-10x-3", '"1-10x-3": the step must be 1 or more.'),
        ("-1", '"-1": frame numbers are 0 to 99999.'),
        ("1-100000", '"1-100000": frame numbers are 0 to 99999.'),
        ("20-10", '"20-10": the range ends before it starts.'),
        ("1-10,8-12", 'Frame 8 is listed twice ("1-10" and "8-12"); list each frame once.'),
        ("7,7", 'Frame 7 is listed twice ("7" and "7")'),
        ("0-10000", f"A job renders at most {MAX_FRAMES_PER_JOB} frames; this list has 10001."),
        ("1" * (MAX_FRAME_LIST + 1), f"no more than {MAX_FRAME_LIST} characters"),
        ("0-20000x4,1-20000x6", f"this list has more than {MAX_FRAME_LIST} characters"),
        ("1-3\n", "control"),
    ],
)
def test_a_bad_frame_list_gets_400_naming_frames_and_the_problem(client, frames, says):
    error = assert_error(post(client, {**BODY, "frames": frames}), 400, "invalid")
    assert list(error["details"]) == ["frames"] and says in error["details"]["frames"][0]
    assert error["message"].startswith("frames: ")


@pytest.mark.parametrize("value", [12, ["1-10"], None, {"from": 1}, True])
def test_frames_must_be_a_string(client, value):
    error = assert_error(post(client, {**BODY, "frames": value}), 400, "invalid")
    assert list(error["details"]) == ["frames"]


@pytest.mark.parametrize("other", [{"frame_start": 1}, {"frame_end": 10}, {"frame_start": 1, "frame_end": 10}])
def test_frames_and_frame_start_or_end_together_get_400(client, other):
    error = assert_error(post(client, {**BODY, "frames": "1-10", **other}), 400, "invalid")
    assert error["details"] == {"frames": ["Give either frames or frame_start and frame_end, not both."]}


def test_a_list_that_makes_too_many_chunks_is_refused_on_chunk_size(client):
    error = assert_error(post(client, {**BODY, "frames": "1-2001x2", "chunk_size": 1}), 400, "invalid")
    assert "1001 frames in chunks of 1 make 1001 chunks" in error["details"]["chunk_size"][0]


def test_an_accepted_list_shows_in_normal_form_and_counts_its_frames(client):
    resp = post(client, {**BODY, "frames": "200-210, 1-100x2,150", "chunk_size": 20})
    assert resp.status_code == 201, resp.content
    job = resp.json()
    assert (job["frames"], job["frame_start"], job["frame_end"]) == ("1-99x2,150,200-210", 1, 210)
    assert (job["progress"]["frames_total"], job["progress"]["chunks_total"]) == (62, 4)
    assert client.get(f"/api/jobs/{job['id']}").json()["frames"] == "1-99x2,150,200-210"
    listed = client.get("/api/jobs").json()["jobs"]
    assert [j["frames"] for j in listed if j["id"] == job["id"]] == ["1-99x2,150,200-210"]

    repo = wiring.job_repository()  # what a worker's fan-out writes: a chunk item per chunk_size listed frames
    stored = repo.get(job["id"])
    repo.chunks.put(stored, stored.new_chunks())
    tasks = client.get(f"/api/jobs/{job['id']}/tasks").json()["tasks"]
    assert [(t["frames"], t["frame_start"], t["frame_end"]) for t in tasks] == [
        ("1-39x2", 1, 39),
        ("41-79x2", 41, 79),
        ("81-99x2,150,200-208", 81, 208),
        ("209-210", 209, 210),
    ]


def test_a_list_of_one_chunk_is_its_own_task_and_a_plain_range_shows_as_one(client):
    job = post(client, {**BODY, "frames": "1-7x3,10", "chunk_size": 5}).json()
    assert (job["frames"], job["progress"]["frames_total"], job["progress"]["chunks_total"]) == ("1-10x3", 4, 1)
    [task] = client.get(f"/api/jobs/{job['id']}/tasks").json()["tasks"]
    assert (task["index"], task["frames"], task["frame_start"], task["frame_end"]) == (0, "1-10x3", 1, 10)
    plain = post(client, {**BODY, "frame_start": 3, "frame_end": 8}).json()
    assert plain["frames"] == "3-8"
    same = post(client, {**BODY, "frames": "3-8"}).json()
    assert (same["frame_start"], same["frame_end"], same["frames"]) == (3, 8, "3-8")


def test_the_same_frames_as_a_list_or_a_range_replay_one_idempotent_submit(client):
    headers = {"HTTP_IDEMPOTENCY_KEY": "frames-1"}
    first = post(client, {**BODY, "frames": "4-6"}, **headers)
    again = post(client, {**BODY, "frame_start": 4, "frame_end": 6}, **headers)
    assert first.status_code == again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = post(client, {**BODY, "frames": "4,6"}, **headers)
    assert_error(other, 422, "idempotency_key_reused")


def test_the_owner_limit_counts_a_lists_frames_and_a_cancel_gives_them_back(emulator, settings):
    settings.RENDER_MAX_ACTIVE_FRAMES_PER_OWNER = 30
    gina = APIClient()
    gina.credentials(HTTP_AUTHORIZATION=f"Bearer {key_for('gina')}")
    first = post(gina, {**BODY, "frames": "1-100x5"})  # 20 frames over a span of 96
    assert first.status_code == 201
    error = assert_error(post(gina, {**BODY, "frames": "1-21x2"}), 429, "owner_limit_reached")  # 11 more
    assert error["details"] == {"frames_active": 20, "frames_requested": 11, "limit": 30}
    assert gina.post(f"/api/jobs/{first.json()['id']}/cancel").json()["status"] == "CANCELLED"
    assert post(gina, {**BODY, "frames": "1-59x2"}).status_code == 201  # 30: all of the 20 came back


def test_a_blender_job_with_a_frame_list_does_not_wait_for_the_files_range(client):
    body = b"BLENDER-v304" + b"frame lists" * 64
    sha = hashlib.sha256(body).hexdigest()
    assert put(declare(client, sha=sha, size=len(body)).json()["upload"], body).status_code == 200
    blender = {"scene": "shot", "renderer": "blender", "scene_file": sha}
    # The farm is still reading the file: a job left to its range waits, one given its frames does not.
    assert_error(post(client, blender), 409, "scene_file_inspecting")
    job = post(client, {**blender, "frames": "1-7x3"})
    assert job.status_code == 201, job.content
    assert (job.json()["frames"], job.json()["frame_start"], job.json()["frame_end"]) == ("1-7x3", 1, 7)
