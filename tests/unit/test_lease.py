"""The lease keeper renews while nothing else does, and gives up once a renewal is refused."""

import time

from jobs.errors import JobStateConflict
from jobs.services.lease import LeaseKeeper


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_renews_during_a_long_frame_and_stops_when_refused():
    calls = []

    def renew():
        calls.append(time.monotonic())
        if len(calls) == 3:
            raise JobStateConflict("cancelled")

    with LeaseKeeper(renew, every=0.05) as keeper:
        wait_until(lambda: len(calls) == 3)
        time.sleep(0.2)
    assert len(calls) == 3 and keeper.renewals == 2


def test_frame_writes_make_renewals_unnecessary():
    calls = []
    with LeaseKeeper(lambda: calls.append(1), every=0.3) as keeper:
        for _ in range(10):
            keeper.touched()
            time.sleep(0.05)
    assert calls == []
