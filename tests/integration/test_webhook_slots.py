"""Per-owner webhook slots against the emulator; the same contract runs on the fake, to keep it honest."""

from datetime import timedelta

import pytest

from jobs.adapters import aws
from jobs.repository.webhook_slots import DynamoDeliverySlots, slots_key
from tests.conftest import T0
from tests.fakes import FakeDeliverySlots

LEASE = timedelta(seconds=35)


@pytest.fixture(params=["dynamo", "fake"])
def slots(request):
    if request.param == "fake":
        return FakeDeliverySlots()
    table = request.getfixturevalue("table")  # first: it points boto3 at the emulator
    return DynamoDeliverySlots(client=aws.client("dynamodb"), table_name=table)


def take(slots, token, *, owner="alice", now=T0, limit=2):
    return slots.take(owner, limit=limit, token=token, now=now, until=now + LEASE)


def test_an_owner_holds_at_most_limit_slots_and_only_a_holder_releases_one(slots):
    assert {take(slots, "a"), take(slots, "b")} == {0, 1}
    assert take(slots, "c") is None
    assert take(slots, "x", owner="bob") is not None  # owners do not share slots
    for slot in (0, 1):
        slots.release("alice", slot, token="wrong")  # not the holder: nothing freed
    assert take(slots, "c") is None


def test_release_by_the_holder_frees_its_slot_for_the_next(slots):
    a = take(slots, "a")
    take(slots, "b")
    slots.release("alice", a, token="a")
    assert take(slots, "c") == a
    assert take(slots, "d") is None


def test_a_lapsed_slot_is_taken_and_its_old_holder_cannot_release_it(slots):
    a = take(slots, "dead")  # its worker was SIGKILLed: never released
    take(slots, "b", now=T0 + timedelta(seconds=10))
    assert take(slots, "c", now=T0 + LEASE - timedelta(seconds=1)) is None  # still within the lease
    later = T0 + LEASE + timedelta(seconds=1)
    assert take(slots, "c", now=later) == a
    slots.release("alice", a, token="dead")  # late: the slot is c's now
    assert take(slots, "d", now=later) is None


def test_a_larger_limit_offers_more_slots_on_the_same_item(slots):
    assert [take(slots, t) for t in ("a", "b", "c")].count(None) == 1
    assert take(slots, "c", limit=3) is not None


def test_the_slot_item_expires_a_day_after_its_last_take(table):
    client = aws.client("dynamodb")
    DynamoDeliverySlots(client=client, table_name=table).take("alice", limit=2, token="a", now=T0, until=T0 + LEASE)
    item = client.get_item(TableName=table, Key=slots_key("alice"))["Item"]
    assert int(item["expires_at"]["N"]) == int((T0 + LEASE + timedelta(days=1)).timestamp())
