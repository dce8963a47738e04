"""Quotes and budgets on the fakes: the scout frames, the estimate's arithmetic, the price of a worker-second,
and a submit refused once the owner's month has spent its budget."""

import pytest

from jobs.domain import FrameList, Prices, QuoteFor, month_of, quote_estimate, scout_frames
from jobs.errors import BudgetExceeded
from jobs.services.budgets import budget_check, budget_set, usage_get
from tests.conftest import T0
from tests.fakes import PRICES, FakeTaskQueue, InMemoryJobRepository, spending
from tests.unit.conftest import Clock, create

TARGET = QuoteFor(frames=240, chunks=24, chunk_size=10)


@pytest.mark.parametrize(
    ("frames", "scouts"),
    [("1-24", "1,13,24"), ("1-100x2,150", "1,51,150"), ("7", "7"), ("3,9", "3,9"), ("1-3", "1-3"), ("0-4", "0-4x2")],
)
def test_a_scout_renders_the_first_middle_and_last_frames(frames, scouts):
    assert str(scout_frames(FrameList.parse(frames))) == scouts


def test_a_worker_second_costs_the_workers_size_at_fargate_prices():
    assert PRICES.per_worker_second == pytest.approx((4 * 0.04048 + 8 * 0.004445) / 3600)
    assert Prices(vcpu=1, memory_gb=2, vcpu_hour=3600, gb_hour=0).dollars(1.5) == 1.5


def test_the_estimate_is_frames_at_the_steady_rate_plus_one_start_up_per_chunk():
    # The scout: 3 frames in one chunk; its first frame took 4 s (Blender's 3 s start in it), then 1 s each;
    # 6.5 s from the claim to its last write, so 3.5 s of start-up.
    quote = quote_estimate(
        target=TARGET,
        scouted=3,
        worker_seconds=6.5,
        render_seconds=6.0,
        first_frame_seconds=4.0,
        workers=5,
        prices=PRICES,
    )
    assert (quote.seconds_per_frame, quote.startup_seconds) == (1.0, 3.5)
    assert quote.worker_seconds == 240 * 1.0 + 24 * 3.5
    assert quote.wall_seconds == 5 * (3.5 + 10 * 1.0)  # 24 chunks on 5 workers: 5 waves of a full chunk
    assert quote.dollars == PRICES.dollars(324.0) and quote.workers == 5


def test_no_live_worker_means_no_wall_time_and_a_short_job_runs_in_one_wave():
    quote = quote_estimate(
        target=QuoteFor(frames=2, chunks=1, chunk_size=5),
        scouted=2,
        worker_seconds=5.0,
        render_seconds=4.5,
        first_frame_seconds=3.5,
        workers=0,
        prices=PRICES,
    )
    assert quote.wall_seconds is None and quote.worker_seconds == 5.0
    busy = quote_estimate(
        target=QuoteFor(frames=2, chunks=1, chunk_size=5),
        scouted=2,
        worker_seconds=5.0,
        render_seconds=4.5,
        first_frame_seconds=3.5,
        workers=8,
        prices=PRICES,
    )
    assert busy.wall_seconds == 5.0  # one chunk of 2 frames, on one of the 8 workers


def test_a_kept_renderer_starts_once_per_worker_not_once_per_chunk():
    # The same scout as above: 3 s of its 3.5 s start-up is Blender's own start (the first frame's excess).
    args = dict(target=TARGET, scouted=3, worker_seconds=6.5, render_seconds=6.0, first_frame_seconds=4.0)
    kept = quote_estimate(**args, workers=5, prices=PRICES, kept_renderer=True)
    assert (kept.renderer_start_seconds, kept.renderer_starts) == (3.0, 5)
    assert kept.worker_seconds == 240 * 1.0 + 24 * 0.5 + 5 * 3.0  # 24 chunks over 5 workers: 5 Blender starts
    assert kept.wall_seconds == 5 * (0.5 + 10 * 1.0) + 3.0
    per_chunk = quote_estimate(**args, workers=5, prices=PRICES)
    assert per_chunk.renderer_starts == 24 and per_chunk.worker_seconds == 240 + 24 * 3.5


def test_a_one_frame_scout_counts_its_whole_render_per_frame():
    quote = quote_estimate(
        target=TARGET,
        scouted=1,
        worker_seconds=5.0,
        render_seconds=4.0,
        first_frame_seconds=4.0,
        workers=1,
        prices=PRICES,
    )
    assert (quote.seconds_per_frame, quote.startup_seconds) == (4.0, 1.0)


def test_a_submit_is_refused_once_the_months_spend_reaches_the_budget():
    repo, clock = InMemoryJobRepository(), Clock()
    month = month_of(clock())
    budget_set(budgets=repo, owner="alice", dollars=1.0, now=T0)
    repo.spend_seconds[("alice", month)] = 0.99 / PRICES.per_worker_second
    budget_check(spending=spending(repo), owner="alice", now=clock())  # $0.99 of $1: still allowed
    repo.spend_seconds[("alice", month)] = 1.0 / PRICES.per_worker_second
    with pytest.raises(BudgetExceeded) as refused:
        create(repo, FakeTaskQueue(), clock)
    assert refused.value.details == {"budget": 1.0, "spent": 1.0, "month": month}
    assert repo.jobs == {} and repo.usage.get("alice", 0) == 0  # refused before anything was written
    usage = usage_get(spending=spending(repo), owner="alice", now=clock())
    assert (usage.spent, usage.remaining) == (1.0, 0.0)
    create(repo, FakeTaskQueue(), clock, owner="bob")  # another owner's budget is its own
    budget_set(budgets=repo, owner="alice", dollars=None, now=T0)
    create(repo, FakeTaskQueue(), clock)  # no budget, no limit
    with pytest.raises(ValueError, match="0 dollars or more"):
        budget_set(budgets=repo, owner="alice", dollars=-1, now=T0)


def test_a_dry_run_stores_a_scout_that_quotes_the_job_and_sends_it_alone():
    repo, queue, clock = InMemoryJobRepository(), FakeTaskQueue(), Clock()
    scout, _ = create(repo, queue, clock, frames=(1, 24), chunk_size=4, dry_run=True)
    assert str(scout.frames) == "1,13,24" and scout.chunks_total == 1 and not scout.steps
    assert scout.quote_for == QuoteFor(frames=24, chunks=6, chunk_size=4)
    # One chunk item, as a chunk of the quoted job is (a one-chunk job would make its outputs before its last write).
    assert not scout.single_chunk and [f[0] for f in queue.fanouts] == [scout.id] and queue.chunks == []
