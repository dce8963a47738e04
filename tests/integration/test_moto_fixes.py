"""The emulator's fixes to moto (jobs/devstack/moto_fixes.py) keep DynamoDB's behaviour: a cancelled
transaction leaves every item as it was, queries see every write, and memory does not grow per query."""

import uuid

import pytest
from botocore.exceptions import ClientError

from jobs.adapters import aws


@pytest.fixture
def plain(emulator):
    """A table with a range key and one index (`g`, `sk`), with 200 items over 20 partitions and 4 groups."""
    client = aws.client("dynamodb")
    name = f"fix-{uuid.uuid4().hex[:10]}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "g")],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(200):
        item = {"pk": {"S": f"P{i % 20}"}, "sk": {"S": f"S{i:03d}"}, "g": {"S": f"G{i % 4}"}, "n": {"N": "0"}}
        client.put_item(TableName=name, Item=item)
    return client, name


def _key(pk: str, sk: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _in_group(client, name: str, group: str) -> list[str]:
    resp = client.query(
        TableName=name,
        IndexName="by-g",
        KeyConditionExpression="g = :g",
        ExpressionAttributeValues={":g": {"S": group}},
    )
    return sorted(i["sk"]["S"] for i in resp["Items"])


def test_a_cancelled_transaction_leaves_every_item_as_it_was(plain):
    client, name = plain
    before = client.get_item(TableName=name, Key=_key("P1", "S001"))["Item"]
    with pytest.raises(ClientError) as cancelled:
        client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": name,
                        "Key": _key("P1", "S001"),
                        "UpdateExpression": "SET n = n + :one, g = :moved",
                        "ExpressionAttributeValues": {":one": {"N": "1"}, ":moved": {"S": "G9"}},
                    }
                },
                {"Put": {"TableName": name, "Item": {**_key("NEW", "x"), "g": {"S": "G9"}}}},
                {"Delete": {"TableName": name, "Key": _key("P2", "S002")}},
                {
                    "ConditionCheck": {
                        "TableName": name,
                        "Key": _key("P3", "S003"),
                        "ConditionExpression": "n = :nine",
                        "ExpressionAttributeValues": {":nine": {"N": "9"}},
                    }
                },
            ]
        )
    reasons = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "None", "ConditionalCheckFailed"]
    assert client.get_item(TableName=name, Key=_key("P1", "S001"))["Item"] == before
    assert "Item" not in client.get_item(TableName=name, Key=_key("NEW", "x"))
    assert "Item" in client.get_item(TableName=name, Key=_key("P2", "S002"))
    assert _in_group(client, name, "G9") == []  # the index saw nothing of it either


def test_queries_see_every_write(plain):
    client, name = plain
    partition = client.query(
        TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "P7"}}
    )["Items"]
    assert [i["sk"]["S"] for i in partition] == [f"S{i:03d}" for i in range(7, 200, 20)]
    assert len(_in_group(client, name, "G1")) == 50
    client.update_item(
        TableName=name,
        Key=_key("P1", "S001"),
        UpdateExpression="SET g = :g",
        ExpressionAttributeValues={":g": {"S": "G2"}},
    )
    assert "S001" not in _in_group(client, name, "G1") and "S001" in _in_group(client, name, "G2")
    client.transact_write_items(
        TransactItems=[{"Put": {"TableName": name, "Item": {**_key("P1", "S999"), "g": {"S": "G1"}}}}]
    )
    client.delete_item(TableName=name, Key=_key("P5", "S005"))
    group = _in_group(client, name, "G1")
    assert "S999" in group and "S005" not in group and len(group) == 49
    assert (
        client.query(
            TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "nobody"}}
        )["Items"]
        == []
    )


def test_moto_keeps_no_item_object_per_query(monkeypatch):
    """moto appended every Item it made (each Query's copies) to a class-level list: ~1 KB per item returned."""
    import boto3
    from moto import mock_aws
    from moto.dynamodb.models.dynamo_type import Item

    from jobs.devstack import moto_fixes

    moto_fixes.apply()
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        client = boto3.client(
            "dynamodb", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
        )
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for i in range(20):
            client.put_item(TableName="t", Item={"pk": {"S": f"p{i}"}})
        for _ in range(10):
            client.scan(TableName="t")
            client.query(TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p1"}})
        assert len(Item.instances_tracked) == 0
