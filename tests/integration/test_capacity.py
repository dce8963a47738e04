"""The emulator's capacity meter prices writes and reads as DynamoDB bills them (jobs/devstack/capacity.py)."""

import json
import urllib.request
import uuid

import boto3
import pytest

from jobs.devstack.capacity import item_size, value_size


def test_item_sizes_follow_dynamodbs_rules():
    assert value_size({"S": "héllo"}) == 6  # UTF-8 bytes
    assert value_size({"N": "12345"}) == 4  # about a byte per two digits, plus one
    assert value_size({"BOOL": True}) == 1
    assert value_size({"L": [{"S": "ab"}, {"N": "1"}]}) == 3 + (1 + 2) + (1 + 2)
    assert item_size({"pk": {"S": "JOB#1"}, "n": {"N": "7"}}) == (2 + 5) + (1 + 2)


@pytest.fixture
def metered(emulator):
    """A fresh table with one ALL index and one KEYS_ONLY index, and the emulator's meter zeroed."""
    endpoint = emulator.env["AWS_ENDPOINT_URL"]
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    name = f"meter-{uuid.uuid4().hex[:8]}"
    attrs = ["pk", "sk", "a", "b"]
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in attrs],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "all",
                "KeySchema": [{"AttributeName": "a", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": "keys",
                "KeySchema": [{"AttributeName": "b", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
    )
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/_emulator/requests/reset", method="POST")).close()

    def units() -> dict:
        with urllib.request.urlopen(f"{endpoint}/_emulator/capacity") as resp:
            rows = json.load(resp)["units"]
        return {(r["target"].replace(name, "t"), r["kind"]): r["units"] for r in rows if r["target"].startswith(name)}

    return client, name, units


def test_writes_cost_by_size_index_changes_and_transactions(metered):
    client, table, units = metered
    big = "x" * 1500  # makes the item (and its ALL-projected entry) two write units
    client.put_item(TableName=table, Item={"pk": {"S": "p"}, "sk": {"S": "s"}, "a": {"S": "1"}, "big": {"S": big}})
    assert units() == {("t", "write"): 2, ("t/all", "write"): 2}  # not in `keys`: it has no `b`

    # An update of a projected attribute rewrites the ALL entry; `keys` still has no entry.
    client.update_item(
        TableName=table,
        Key={"pk": {"S": "p"}, "sk": {"S": "s"}},
        UpdateExpression="SET n = :n",
        ExpressionAttributeValues={":n": {"N": "1"}},
    )
    assert units() == {("t", "write"): 4, ("t/all", "write"): 4}

    # Moving an index key: a delete and a put in `all`; a new KEYS_ONLY entry (one small unit) in `keys`.
    client.update_item(
        TableName=table,
        Key={"pk": {"S": "p"}, "sk": {"S": "s"}},
        UpdateExpression="SET a = :a, b = :b",
        ExpressionAttributeValues={":a": {"S": "2"}, ":b": {"S": "k"}},
    )
    assert units() == {("t", "write"): 6, ("t/all", "write"): 8, ("t/keys", "write"): 1}

    # A failed condition costs the table write only.
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.update_item(
            TableName=table,
            Key={"pk": {"S": "p"}, "sk": {"S": "s"}},
            UpdateExpression="SET n = :n",
            ConditionExpression="attribute_not_exists(pk)",
            ExpressionAttributeValues={":n": {"N": "2"}},
        )
    assert units()[("t", "write")] == 8 and units()[("t/all", "write")] == 8

    # A transaction doubles the table's units: one small new item, 1 x 2.
    client.transact_write_items(
        TransactItems=[{"Put": {"TableName": table, "Item": {"pk": {"S": "q"}, "sk": {"S": "s"}}}}]
    )
    assert units()[("t", "write")] == 10


def test_reads_cost_by_size_and_consistency(metered):
    client, table, units = metered
    client.put_item(TableName=table, Item={"pk": {"S": "p"}, "sk": {"S": "s"}, "big": {"S": "y" * 5000}})
    before = units().get(("t", "read"), 0)
    client.get_item(TableName=table, Key={"pk": {"S": "p"}, "sk": {"S": "s"}}, ConsistentRead=True)
    assert units()[("t", "read")] - before == 2  # 5 KB: two 4 KB units
    client.get_item(TableName=table, Key={"pk": {"S": "p"}, "sk": {"S": "s"}})
    assert units()[("t", "read")] - before == 3  # eventually consistent: half


def test_a_projected_read_is_billed_for_the_whole_item(metered):
    """A ProjectionExpression trims the answer, not the bill: DynamoDB prices the item read."""
    client, table, units = metered
    key = {"pk": {"S": "p"}, "sk": {"S": "s"}}
    client.put_item(TableName=table, Item={**key, "big": {"S": "y" * 5000}})  # 5 KB: 2 units of 4 KB
    before = units().get(("t", "read"), 0)
    client.get_item(TableName=table, Key=key, ConsistentRead=True, ProjectionExpression="pk")
    assert units()[("t", "read")] - before == 2
    client.batch_get_item(RequestItems={table: {"Keys": [key], "ConsistentRead": True, "ProjectionExpression": "pk"}})
    assert units()[("t", "read")] - before == 4  # a batch's ConsistentRead is per table
    client.transact_get_items(TransactItems=[{"Get": {"TableName": table, "Key": key, "ProjectionExpression": "pk"}}])
    assert units()[("t", "read")] - before == 8  # a transaction's read: double


def test_a_filtered_or_counted_query_is_billed_for_the_items_it_evaluates(metered):
    """AWS bills a Query for what it reads, before the filter: a COUNT or a filter that keeps nothing still
    reads every item of the key range."""
    client, table, units = metered
    for n in range(12):
        client.put_item(TableName=table, Item={"pk": {"S": "p"}, "sk": {"S": f"s{n:02d}"}, "big": {"S": "y" * 1000}})
    key = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p"}}}
    before = units().get(("t", "read"), 0)
    client.query(TableName=table, Select="COUNT", ConsistentRead=True, **key)
    counted = units()[("t", "read")] - before
    assert counted == 3  # 12 items of ~1 KB evaluated: 3 units of 4 KB, though no item came back
    filtered = {
        "FilterExpression": "#b = :none",
        "ExpressionAttributeNames": {"#b": "big"},
        "ExpressionAttributeValues": {":p": {"S": "p"}, ":none": {"S": "nothing"}},
    }
    got = client.query(TableName=table, ConsistentRead=True, KeyConditionExpression="pk = :p", **filtered)
    assert got["Count"] == 0 and units()[("t", "read")] - before == 6  # the filter saved nothing
