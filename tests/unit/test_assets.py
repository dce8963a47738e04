"""Asset rules on fakes: declare, look up, and the checks a job's scene file passes before it is accepted."""

import hashlib
from datetime import timedelta

import pytest

from jobs.domain import RendererName, asset_key, owner_slug
from jobs.errors import AssetConflict, AssetNotFound, AssetTooLarge, SceneFileMismatch, SceneFileMissing
from jobs.services import JobSpec, SceneFiles, asset_declare, asset_get, job_create
from jobs.services.api_keys import SCOPE_HIGH
from tests.conftest import T0
from tests.fakes import (
    FakeAssetRepository,
    FakeAssetStore,
    FakeTaskQueue,
    FakeWebhooks,
    InMemoryJobRepository,
    control,
    spending,
)

BODY = b"BLENDER-v304 pretend scene" * 10
SHA = hashlib.sha256(BODY).hexdigest()
SIZE = len(BODY)
DAYS = timedelta(days=30)


@pytest.fixture
def repo():
    return FakeAssetRepository()


@pytest.fixture
def store():
    return FakeAssetStore()


def declare(repo, store, owner="alice", sha=SHA, size=SIZE, max_bytes=10**6):
    return asset_declare(
        repo=repo, store=store, owner=owner, sha256=sha, size=size, max_bytes=max_bytes, now=T0, retention=DAYS
    )


def test_a_new_asset_gets_an_upload_then_none_once_stored(repo, store):
    first = declare(repo, store)
    assert first.upload is not None and not first.uploaded
    assert asset_get(repo=repo, store=store, queue=FakeTaskQueue(), owner="alice", sha256=SHA, now=T0).uploaded is False
    store.put("alice", SHA, BODY)
    again = declare(repo, store)
    assert again.upload is None and again.uploaded
    assert asset_get(repo=repo, store=store, queue=FakeTaskQueue(), owner="alice", sha256=SHA, now=T0).uploaded is True


def test_assets_are_per_owner(repo, store):
    declare(repo, store)
    store.put("alice", SHA, BODY)
    with pytest.raises(AssetNotFound):
        asset_get(repo=repo, store=store, queue=FakeTaskQueue(), owner="bob", sha256=SHA, now=T0)
    # Bob must upload his own copy: his key is another one.
    assert declare(repo, store, owner="bob").upload is not None
    assert asset_key("alice", SHA) != asset_key("bob", SHA)
    assert asset_key("a/../b", SHA).startswith(f"assets/{owner_slug('a/../b')}/") and ".." not in owner_slug("a/../b")


def test_size_limit_and_conflicting_sizes(repo, store):
    with pytest.raises(AssetTooLarge) as exc:
        declare(repo, store, size=2000, max_bytes=1000)
    assert exc.value.status_code == 413 and exc.value.details == {"size": 2000, "limit": 1000}
    declare(repo, store)
    store.put("alice", SHA, BODY)
    with pytest.raises(AssetConflict):
        declare(repo, store, size=SIZE + 1)


def submit(jobs, scene_files, sha=SHA, owner="alice"):
    from jobs.domain import OutputFormat, Priority, Scene

    spec = JobSpec(
        scene=Scene(name="s", width=None, height=None, output_format=OutputFormat.PNG, samples=None),
        frame_start=1,
        frame_end=4,
        chunk_size=2,
        priority=Priority.NORMAL,
        renderer=RendererName.BLENDER,
        scene_file=sha,
    )
    return job_create(
        jobs=control(jobs, FakeTaskQueue()),
        owner=owner,
        spec=spec,
        idempotency_key=None,
        now=T0,
        scene_files=scene_files,
        spending=spending(jobs),
        scopes=frozenset({SCOPE_HIGH}),
        frame_limit=0,
        hooks=FakeWebhooks(),
    )


def test_a_job_needs_its_scene_file_stored_as_declared(repo, store):
    jobs = InMemoryJobRepository()
    files = SceneFiles(repo=repo, store=store, queue=FakeTaskQueue(), retention=DAYS)
    with pytest.raises(SceneFileMissing):
        submit(jobs, files)  # never declared
    declare(repo, store)
    with pytest.raises(SceneFileMissing):
        submit(jobs, files)  # declared, not uploaded
    store.put("alice", SHA, BODY + b"more")
    with pytest.raises(SceneFileMismatch) as exc:
        submit(jobs, files)  # stored with another size
    assert exc.value.status_code == 422
    store.put("alice", SHA, BODY)
    with pytest.raises(SceneFileMissing):
        submit(jobs, files, owner="bob")  # another owner's hash names nothing
    assert not jobs.jobs
    job, _ = submit(jobs, files)
    assert job.renderer is RendererName.BLENDER and job.scene_file == SHA and job.scene.width is None
    # Each job keeps the file: the record's expiry moves to the job's submit + retention, the object is
    # copied in place when older than a day (the fake's objects date from 1970).
    assert repo.get("alice", SHA).expires_at == T0 + DAYS
    assert store.refreshed == [("alice", SHA)]


def test_a_chunk_log_keeps_the_last_part_and_saves_only_changes():
    from jobs.services.render_log import LOG_LIMIT, ChunkLog, read_log
    from tests.fakes import FakeResultStore

    store = FakeResultStore()
    log = ChunkLog(store=store, job_id="j" * 32, chunk=3)
    log.flush()
    assert read_log(store=store, job_id="j" * 32, chunk=3) is None  # nothing written, nothing saved
    log.write("x" * LOG_LIMIT)
    log.write("Error: the end\n")
    log.flush()
    saved = read_log(store=store, job_id="j" * 32, chunk=3)
    assert saved["truncated"] and saved["log"].endswith("Error: the end\n") and len(saved["log"]) == LOG_LIMIT
    puts = store.puts
    log.flush()
    assert store.puts == puts
