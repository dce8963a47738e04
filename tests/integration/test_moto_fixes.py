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


def _mocked(monkeypatch, service: str):
    import boto3

    for name in ("AWS_ENDPOINT_URL", f"AWS_ENDPOINT_URL_{service.upper()}"):
        monkeypatch.delenv(name, raising=False)
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")


ITEM = {
    "pk": {"S": "a"},
    "b": {"B": b"\x00\x01hi"},
    "n": {"N": "1.50"},
    "m": {"M": {"x": {"B": b"zz"}, "y": {"L": [{"N": "2"}, {"BOOL": True}, {"NULL": True}]}}},
    "sets": {"M": {"ss": {"SS": ["p", "q"]}, "bs": {"BS": [b"1", b"2"]}, "ns": {"NS": ["1", "2"]}}},
}


def _data_plane_calls(client) -> list:
    """Every data-plane call the fast path writes, each answer as botocore parsed it (its metadata left out)."""
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    key = {"pk": {"S": "a"}}
    one = {":one": {"N": "1"}}
    answers = [
        client.put_item(TableName="t", Item=ITEM, ReturnConsumedCapacity="TOTAL"),
        client.get_item(TableName="t", Key=key),
        client.update_item(
            TableName="t",
            Key=key,
            UpdateExpression="SET n = n + :one",
            ExpressionAttributeValues=one,
            ReturnValues="ALL_NEW",
        ),
        client.query(TableName="t", KeyConditionExpression="pk = :a", ExpressionAttributeValues={":a": {"S": "a"}}),
        client.scan(TableName="t", Limit=1),
        client.batch_get_item(RequestItems={"t": {"Keys": [key, {"pk": {"S": "none"}}]}}),
        client.batch_write_item(RequestItems={"t": [{"PutRequest": {"Item": {"pk": {"S": "c"}}}}]}),
        client.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": {"pk": {"S": "d"}}}}]),
        client.transact_get_items(TransactItems=[{"Get": {"TableName": "t", "Key": key}}]),
        client.delete_item(TableName="t", Key={"pk": {"S": "c"}}, ReturnValues="ALL_OLD"),
    ]
    try:
        client.update_item(
            TableName="t",
            Key=key,
            UpdateExpression="SET n = :one",
            ConditionExpression="n = :one",
            ExpressionAttributeValues=one,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as exc:
        answers.append({"error": exc.response["Error"], "item": exc.response.get("Item")})
    for answer in answers:
        answer.pop("ResponseMetadata", None)
    return answers


def test_dynamodb_answers_written_as_plain_json_parse_as_motos_own_serializer_writes_them(monkeypatch):
    """The emulator writes the data-plane calls' results with json.dumps (moto's serializer walked the model
    shape by shape, a fifth of its CPU): a client reads the same answers, blobs, numbers, sets and errors alike."""
    from moto import mock_aws
    from moto.core.serialize import ResponseSerializer
    from moto.dynamodb.responses import DynamoHandler

    from jobs.devstack import moto_fixes

    moto_fixes.apply()
    fast = DynamoHandler.serialized
    answers, walks = {}, {}
    walk = ResponseSerializer.serialize
    for name, serialized in (("moto's", fast.__wrapped__), ("plain", fast)):
        walks[name] = 0

        def counted(self, result, name=name):
            walks[name] += 1
            return walk(self, result)

        monkeypatch.setattr(ResponseSerializer, "serialize", counted)
        monkeypatch.setattr(DynamoHandler, "serialized", serialized)
        with mock_aws():
            answers[name] = _data_plane_calls(_mocked(monkeypatch, "dynamodb"))
    assert answers["plain"] == answers["moto's"]
    # the plain answers did not go through moto's serializer: only CreateTable's did
    assert walks["moto's"] == 11 and walks["plain"] == 1
    assert answers["plain"][1]["Item"] == ITEM and answers["plain"][-1]["item"]["n"] == {"N": "2.50"}


def test_a_message_past_its_queues_retention_period_is_not_delivered(monkeypatch):
    """moto computed every queue attribute (walks of the queue) to check each delivered message's retention."""
    from moto import mock_aws
    from moto.sqs.models import sqs_backends

    from jobs.devstack import moto_fixes

    moto_fixes.apply()
    with mock_aws():
        sqs = _mocked(monkeypatch, "sqs")
        url = sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        queue = sqs_backends["123456789012"]["us-east-1"].queues["q"]

        def received() -> list[str]:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            return [m["Body"] for m in got]

        sqs.send_message(QueueUrl=url, MessageBody="new")
        assert received() == ["new"]
        sqs.send_message(QueueUrl=url, MessageBody="old")
        queue._messages[-1].sent_timestamp -= 61_000  # sent 61 s ago: past the 60 s retention
        assert received() == []


UPDATES_SCRIPT = r"""
import json, re, sys
import boto3
from botocore.exceptions import ClientError
from moto import mock_aws

if sys.argv[1] == "fixed":
    from jobs.devstack import moto_fixes

    moto_fixes.apply()
key = {"pk": {"S": "a"}}
names = {"#s": "status"}
values = {":a": {"S": "x"}, ":b": {"N": "2"}, ":one": {"N": "1"}, ":zero": {"N": "0"}, ":l": {"L": [{"S": "f"}]},
          ":empty": {"L": []}, ":ss": {"SS": ["p", "q"]}, ":p": {"SS": ["p"]}, ":v": {"M": {"y": {"N": "3"}}},
          ":t": {"BOOL": True}, ":null": {"NULL": True}, ":bin": {"B": b"\x00\xff"}, ":big": {"S": "x" * 404_000},
          ":more": {"S": "y" * 2_000}}
updates = [
    ("SET a = :a, b = :b", None),
    ("SET #s = :a, n = if_not_exists(n, :zero) + :one, l = list_append(if_not_exists(l, :empty), :l) REMOVE b",
     "attribute_exists(a)"),
    ("ADD n :one, ss :ss", None),
    ("DELETE ss :p", None),
    ("SET m = :v", None),
    ("SET m.y = m.y + :one, l[0] = :a", None),
    ("REMOVE l[0], m.y", None),
    ("SET a = :a SET b = :b", None),
    ("SET a = :a, a = :b", None),
    ("SET a = ", None),
    ("SET c = :missing", None),
    ("SET pk = :a", None),
    ("SET a = :b", "a = :b"),
    ("SET a = :a", "(a = :a OR (#s = :a AND attribute_not_exists(zz))) AND size(l) < :b"),
    ("SET b = :b", "NOT begins_with(a, :a) OR a IN (:a, :b) OR n BETWEEN :zero AND :b"),
    ("SET b = :one", "attribute_exists(b) AND b <> :one"),
    ("SET q = q + :one", None),
    ("ADD a :one", None),
    ("SET #k = :a", None, {"#k": "pk"}),  # a key attribute, by a name: refused each time
    ("SET #k = :a", None, {"#k": "other"}),  # the same tree with other names: allowed
    ("SET t = :t, z = :null, bin = :bin, #k = :b", None, {"#k": "pk"}),
    ("SET t = :t, z = :null, bin = :bin", None),
    ("SET big = :big", None),  # near moto's size limit, summed with every kind of value the item holds
    ("SET more = :more", None),  # past it: refused
    ("REMOVE big", None),
]
answers = []
with mock_aws():
    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    client.create_table(TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    for _ in range(2):  # twice: the second time from the kept trees
        for expression, condition, *named in updates:
            used = {k: v for k, v in values.items() if re.search(re.escape(k) + r"\b", expression + (condition or ""))}
            call = {"TableName": "t", "Key": key, "UpdateExpression": expression, "ReturnValues": "ALL_NEW",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
            if used:
                call["ExpressionAttributeValues"] = used
            if named or "#s" in expression + (condition or ""):
                call["ExpressionAttributeNames"] = named[0] if named else names
            if condition:
                call["ConditionExpression"] = condition
            try:
                answers.append(client.update_item(**call).get("Attributes"))
            except ClientError as exc:
                answers.append([exc.response["Error"], exc.response.get("Item")])
        client.transact_write_items(TransactItems=[{"Update": {"TableName": "t", "Key": key,
            "UpdateExpression": "ADD n :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}}])
        answers.append(client.get_item(TableName="t", Key=key)["Item"])
        client.delete_item(TableName="t", Key=key)
    for size in (404_990, 404_995, 405_000):  # moto's limit: 405,000 bytes, names and values (pk and a: 3)
        item = {**key, "big": {"S": "x" * size}, "n": {"N": "1"}}
        try:
            client.put_item(TableName="t", Item=item)
            answers.append(len(client.get_item(TableName="t", Key=key)["Item"]["big"]["S"]))
        except ClientError as exc:
            answers.append([exc.response["Error"], None])
print(json.dumps(answers, default=repr))  # a binary value as its bytes' repr
"""


def test_update_expressions_parsed_once_answer_as_moto_answers(tmp_path):
    """The emulator keeps each UpdateExpression's parsed tree and ConditionExpression's tokens, checks a tree's
    clauses and paths once, its traversals keep their node-type maps, and an item's size is summed once, not
    once an attribute (moto's UpdateItem cost 13 ms a call on the job item): every update, error and item comes
    out as moto's own, the first time and from the kept trees, and an item past moto's size limit is refused."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    answers = {}
    for mode in ("moto", "fixed"):
        run = subprocess.run(
            [sys.executable, "-c", UPDATES_SCRIPT, mode], capture_output=True, text=True, env=env, timeout=120
        )
        assert run.returncode == 0, run.stderr
        answers[mode] = json.loads(run.stdout)
    assert answers["fixed"] == answers["moto"]
    errors = [a[0]["Code"] for a in answers["fixed"] if isinstance(a, list)]
    assert errors.count("ValidationException") >= 10 and "ConditionalCheckFailedException" in errors
    first, second, sizes = answers["fixed"][:26], answers["fixed"][26:52], answers["fixed"][52:]
    assert sizes[0] == 404_990 and sizes[2][0]["Code"] == "ValidationException"  # the size limit holds
    assert first == second and first[-1]["n"] == {"N": "3"}  # the kept trees answer as the fresh ones
    key_names, other_names, mixed = first[18:21]
    assert key_names[0]["Code"] == mixed[0]["Code"] == "ValidationException" and other_names["other"]["S"] == "x"
    near, past = first[22:24]
    assert len(near["big"]["S"]) == 404_000 and "exceeded the maximum" in past[0]["Message"]  # an update past it


def test_a_queues_counts_and_deliveries_see_visible_delayed_and_in_flight_messages(monkeypatch):
    """moto read the clock through datetime for each message of a queue at each count, and counted the queue
    for every message sent; each count reads the clock once now, with the same answers."""
    from moto import mock_aws

    from jobs.devstack import moto_fixes

    moto_fixes.apply()
    with mock_aws():
        sqs = _mocked(monkeypatch, "sqs")
        url = sqs.create_queue(QueueName="counts")["QueueUrl"]
        for body in ("one", "two"):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
        got = sqs.receive_message(QueueUrl=url, VisibilityTimeout=60, WaitTimeSeconds=0)["Messages"]
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        names.append("ApproximateNumberOfMessagesDelayed")
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        assert [m["Body"] for m in got] == ["one"]
        assert counts == dict(zip(names, ["1", "1", "1"], strict=True))
        rest = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)["Messages"]
        assert [m["Body"] for m in rest] == ["two"]  # not the one in flight, not the delayed one


def test_undefined_placeholders_and_unreadable_conditions_are_a_validation_error_not_a_crash(monkeypatch):
    """moto crashed (a 500 from the emulator) on a `#name` or `:value` the request does not define and on a
    condition its parser cannot read; DynamoDB answers those with a 400 ValidationException, and so does the
    emulator now."""
    from botocore.exceptions import ClientError
    from moto import mock_aws

    from jobs.devstack import moto_fixes

    moto_fixes.apply()
    with mock_aws():
        dynamodb = _mocked(monkeypatch, "dynamodb")
        dynamodb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        key, value = {"pk": {"S": "a"}}, {":a": {"S": "v"}}
        dynamodb.put_item(TableName="t", Item={**key, "x": {"S": "1"}})
        mistakes = {
            "#x": ("update_item", {"Key": key, "UpdateExpression": "SET #x = :a", "ExpressionAttributeValues": value}),
            "#q": (
                "update_item",
                {"Key": key, "UpdateExpression": "SET x = :a", "ConditionExpression": "#q = :a",
                 "ExpressionAttributeValues": value},
            ),
            ":zz": ("put_item", {"Item": key, "ConditionExpression": "x = :zz"}),
            "Bad comparison": (
                "delete_item", {"Key": key, "ConditionExpression": "x = = :a", "ExpressionAttributeValues": value}
            ),
            "Unmatched (": ("scan", {"FilterExpression": "(x = :a", "ExpressionAttributeValues": value}),
        }  # fmt: skip
        for expected, (call, params) in mistakes.items():
            try:
                getattr(dynamodb, call)(TableName="t", **params)
            except ClientError as exc:
                error, status = exc.response["Error"], exc.response["ResponseMetadata"]["HTTPStatusCode"]
                assert (error["Code"], status) == ("ValidationException", 400) and expected in error["Message"]
            else:
                raise AssertionError(f"{call} with {params} was accepted")
        assert dynamodb.get_item(TableName="t", Key=key)["Item"]["x"] == {"S": "1"}  # nothing changed
