"""The emulator's capacity meter bills a filtered or counted Query for the items it evaluated, as DynamoDB does
(jobs/devstack/capacity.py); tests/integration/test_capacity.py checks the same through the emulator."""

from jobs.devstack.capacity import CapacityMeter, item_size

ITEM = {"pk": {"S": "p"}, "sk": {"S": "s"}, "big": {"S": "y" * 1000}}  # about 1 KB
KEY = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p"}}}


def read_units(body: dict, response: dict, evaluated: list | None) -> float:
    meter = CapacityMeter(lambda name: None)
    meter.charge_read("Query", {"TableName": "t", **body}, response, evaluated)
    return meter.units[("t", "read")]


def test_a_counted_query_is_billed_for_the_items_it_evaluated_not_the_none_it_returned():
    evaluated = [ITEM] * 12  # ~12 KB read: 3 units of 4 KB
    assert item_size(ITEM) > 1000
    counted = {"Count": 12, "ScannedCount": 12}
    assert read_units({**KEY, "Select": "COUNT", "ConsistentRead": True}, counted, evaluated) == 3
    assert read_units({**KEY, "Select": "COUNT"}, counted, evaluated) == 1.5  # eventually consistent: half


def test_a_filtered_query_is_billed_for_the_page_before_its_filter():
    kept = {"Items": [ITEM], "Count": 1, "ScannedCount": 12}
    body = {**KEY, "FilterExpression": "big = :x", "ConsistentRead": True}
    assert read_units(body, kept, [ITEM] * 12) == 3  # not the 1 unit of the one item returned
    # The evaluated items are DynamoDB's ScannedCount at most (a page read again without its filter may be longer).
    assert read_units(body, {**kept, "ScannedCount": 4}, [ITEM] * 12) == 1


def test_an_unfiltered_query_is_billed_for_what_it_returns():
    assert read_units({**KEY, "ConsistentRead": True}, {"Items": [ITEM] * 8, "Count": 8}, None) == 2


def test_the_evaluation_request_is_the_same_page_without_filter_projection_or_count():
    body = {
        "TableName": "t",
        "IndexName": "gsi2",
        "KeyConditionExpression": "#k = :k",
        "FilterExpression": "#s = :s",
        "ProjectionExpression": "#s",
        "Select": "COUNT",
        "Limit": 50,
        "ExclusiveStartKey": {"pk": {"S": "a"}},
        "ExpressionAttributeNames": {"#k": "gsi2pk", "#s": "status"},
        "ExpressionAttributeValues": {":k": {"S": "DUE"}, ":s": {"S": "QUEUED"}},
    }
    assert CapacityMeter.evaluation_request("Query", body) == {
        "TableName": "t",
        "IndexName": "gsi2",
        "KeyConditionExpression": "#k = :k",
        "Limit": 50,  # a Limit bounds the items evaluated, before the filter: the same page
        "ExclusiveStartKey": {"pk": {"S": "a"}},
        "ExpressionAttributeNames": {"#k": "gsi2pk"},
        "ExpressionAttributeValues": {":k": {"S": "DUE"}},
    }
    assert CapacityMeter.evaluation_request("Query", {"TableName": "t", **KEY}) is None
    assert CapacityMeter.evaluation_request("GetItem", {"TableName": "t", "ProjectionExpression": "a"}) is None
