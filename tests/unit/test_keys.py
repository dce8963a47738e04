"""The spread of the sharded index keys: at 1,000 jobs a second no shard may take much more than its share.

The arithmetic (docs/ARCHITECTURE.md, "Keys at 1,000 jobs a second") assumes the writes of one index
partition spread evenly over its shards; here 16,000 time-ordered job ids (as new_job_id makes them, so
sharing long prefixes) must land within 10% of the even share on every shard.
"""

from collections import Counter

from jobs.devstack.capacity import item_size
from jobs.domain import Chunk, FrameResult, JobStatus, OutputFormat, frame_key, new_job_id
from jobs.repository.items import (
    DUE_SHARDS,
    OWNER_SHARDS,
    chunk_to_item,
    due_index,
    iso,
    owner_partition,
    owner_partitions,
    result_to_stored,
    serialize,
    stored_to_result,
)
from tests.conftest import T0

IDS = [new_job_id() for _ in range(16_000)]


def _within_ten_percent(counts: Counter, shards: int) -> None:
    share = len(IDS) / shards
    assert len(counts) == shards
    assert all(abs(n - share) <= 0.10 * share for n in counts.values()), counts


def test_an_owners_jobs_spread_over_every_listing_shard():
    counts = Counter(owner_partition("busy", job_id) for job_id in IDS)
    assert set(counts) == set(owner_partitions("busy"))
    _within_ten_percent(counts, OWNER_SHARDS)


def test_the_sweepers_due_markers_spread_over_every_shard():
    counts = Counter(due_index("JOB", T0, job_id)["gsi2pk"] for job_id in IDS)
    _within_ten_percent(counts, DUE_SHARDS)


def test_a_frames_result_is_stored_in_45_bytes_and_read_back_whole():
    job_id = new_job_id()
    for fmt in (OutputFormat.PNG, OutputFormat.JPEG, OutputFormat.EXR):
        result = FrameResult(
            frame=1234,
            key=frame_key(job_id, 1234, fmt),
            size=5_000_000_000,
            sha256="ab" * 32,
            content_type=fmt.content_type,
        )
        stored = result_to_stored(job_id, result)
        assert isinstance(stored, bytes) and len(stored) == 45
        assert stored_to_result(job_id, stored) == result
    # A key its job's format would not give (another layout, a test's) is stored whole, as before.
    odd = FrameResult(frame=1, key="elsewhere/1.png", size=1, sha256="0" * 64, content_type="image/png")
    assert stored_to_result(job_id, result_to_stored(job_id, odd)) == odd


def test_a_finished_chunk_of_ten_frames_is_one_write_unit():
    """The chunk item at its last write (ten results, no lease) stays within 1 KB at realistic values."""
    job_id, now = new_job_id(), T0
    results = tuple(
        FrameResult(frame=i, key=frame_key(job_id, i, OutputFormat.PNG), size=12_345_678, sha256="ab" * 32,
                    content_type="image/png")
        for i in range(1, 11)
    )  # fmt: skip
    chunk = Chunk(
        job_id=job_id, index=999, frame_start=1, frame_end=10, status=JobStatus.COMPLETED, attempt=3, frames_done=10,
        render_seconds=123.456, worker_seconds=234.567, first_frame_seconds=12.345, results=results, started_at=now,
        finished_at=now, worker="w-0123456789ab",
    )  # fmt: skip
    item = chunk_to_item(chunk)
    item.update({"updated_at": iso(now), "finished_at": iso(now), "started_at": iso(now), "last_write": "f" * 32})
    assert item_size(serialize(item)) <= 1024
