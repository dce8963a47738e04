"""The spread of the sharded index keys: at 1,000 jobs a second no shard may take much more than its share.

The arithmetic (docs/ARCHITECTURE.md, "Keys at 1,000 jobs a second") assumes the writes of one index
partition spread evenly over its shards; here 16,000 time-ordered job ids (as new_job_id makes them, so
sharing long prefixes) must land within 10% of the even share on every shard.
"""

from collections import Counter

from jobs.domain import new_job_id
from jobs.repository.items import (
    DUE_SHARDS,
    OWNER_SHARDS,
    chunk_due_index,
    due_index,
    owner_partition,
    owner_partitions,
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


def test_the_sweepers_due_markers_spread_over_every_shard_even_for_one_jobs_chunks():
    counts = Counter(due_index("JOB", T0, job_id)["gsi2pk"] for job_id in IDS)
    _within_ten_percent(counts, DUE_SHARDS)
    # One big job's chunk markers spread too (10,000 frames a second may be one job's).
    chunks = Counter(chunk_due_index(IDS[0], i, T0)["gsi2pk"] for i in range(len(IDS)))
    _within_ten_percent(chunks, DUE_SHARDS)
