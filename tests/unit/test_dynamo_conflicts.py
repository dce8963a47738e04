"""Transaction conflicts, which moto (one call at a time) never produces and DynamoDB does under concurrency:
a write to an item that another transaction is changing is refused, and botocore does not retry it."""

import pytest
from botocore.exceptions import ClientError

from jobs.errors import ServiceUnavailable, StaleWrite
from jobs.repository import dynamo

KEY = {"pk": {"S": "JOB#j"}, "sk": {"S": "JOB"}}


def _error(code: str, operation: str, **response) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, **response}, operation)


def _cancelled(*codes: str, items=None) -> ClientError:
    reasons = [{"Code": c, **({"Item": items[i]} if items and items[i] else {})} for i, c in enumerate(codes)]
    return _error("TransactionCanceledException", "TransactWriteItems", CancellationReasons=reasons)


class Scripted:
    """A DynamoDB client that answers each call with the next scripted outcome (an exception, or a response)."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls = []

    def _next(self, **params):
        self.calls.append(params)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    transact_write_items = _next
    update_item = _next


@pytest.fixture(autouse=True)
def no_pause(monkeypatch):
    monkeypatch.setattr(dynamo, "_conflict_pause", lambda attempt: None)


UPDATES = [("t", KEY, "SET a = :a", "attribute_exists(pk)", {":a": 1}), ("t", KEY, "SET b = :b", "#status = :x", {})]


def test_a_transaction_cancelled_by_a_conflict_is_tried_again_as_the_same_write():
    client = Scripted(_cancelled("None", "TransactionConflict"), _cancelled("TransactionConflict", "None"), {})
    assert dynamo.conditional_transaction(client, UPDATES, write_id="w1") is None
    stamps = {c["TransactItems"][0]["Update"]["ExpressionAttributeValues"][":write_id"]["S"] for c in client.calls}
    assert len(client.calls) == 3 and stamps == {"w1"}


def test_a_transaction_that_keeps_conflicting_is_service_unavailable():
    client = Scripted(*[_cancelled("TransactionConflict", "None")] * (dynamo.CONFLICT_RETRIES + 1))
    with pytest.raises(ServiceUnavailable):
        dynamo.conditional_transaction(client, UPDATES)


def test_a_lost_condition_is_reported_even_beside_a_conflict():
    current = {"status": {"S": "CANCELLING"}, "attempt": {"N": "1"}, "last_write": {"S": "other"}}
    client = Scripted(_cancelled("None", "ConditionalCheckFailed", items=[None, current]))
    position, conflict = dynamo.conditional_transaction(client, UPDATES)
    assert position == 1 and isinstance(conflict, StaleWrite) and conflict.status == "CANCELLING"


def test_an_update_refused_by_a_transaction_in_progress_is_tried_again():
    client = Scripted(_error("TransactionConflictException", "UpdateItem"), {"Attributes": {"a": {"N": "1"}}})
    assert dynamo.conditional_update(client, "t", KEY, "SET a = :a", condition="attribute_exists(pk)", values={":a": 1})
    assert len(client.calls) == 2


def test_an_update_that_keeps_conflicting_is_service_unavailable():
    client = Scripted(*[_error("TransactionConflictException", "UpdateItem")] * (dynamo.CONFLICT_RETRIES + 1))
    with pytest.raises(ServiceUnavailable):
        dynamo.conditional_update(client, "t", KEY, "SET a = :a", condition="attribute_exists(pk)", values={":a": 1})
