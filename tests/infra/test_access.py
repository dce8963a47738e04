"""Least privilege, checked on the synthesized template: what each task role may and may not do.

A small evaluator of the roles' identity policies (allow statements; wildcard actions and resources;
the condition operators the stack uses) answers "may this role do this action on this resource, with
this partition key?", so each check reads like the AWS request it stands for. Intrinsics are rendered as
`<LogicalId.Arn>` / `<AWS::AccountId>` placeholders. An unknown condition operator fails the test rather
than being ignored.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase

import pytest

from tests.infra.test_stack import actions, resources, statements

pytestmark = pytest.mark.xdist_group("cdk")

REGION = "us-east-1"
ROLES = {
    "api": "ApiTaskTaskRole",
    "worker": "WorkersTaskTaskRole",
    "webhooks": "WebhooksTaskTaskRole",
    "sweeper": "SweeperTaskTaskRole",
}


def render(value) -> str | list:
    if isinstance(value, list):
        return [render(v) for v in value]
    if isinstance(value, dict):
        if "Ref" in value:
            return f"<{value['Ref']}>"
        if "Fn::GetAtt" in value:
            return "<{}.{}>".format(*value["Fn::GetAtt"])
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(render(p) for p in parts)
        raise NotImplementedError(value)
    return value


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def condition_holds(condition: dict, context: dict) -> bool:
    for operator, block in condition.items():
        for key, expected in block.items():
            patterns = as_list(render(expected))
            if operator == "ForAllValues:StringLike":  # vacuously true without values, as in IAM
                if not all(any(fnmatchcase(v, p) for p in patterns) for v in context.get(key, [])):
                    return False
            elif operator == "StringEquals":
                if context.get(key) not in patterns:
                    return False
            elif operator == "StringLike":
                if context.get(key) is None or not any(fnmatchcase(context[key], p) for p in patterns):
                    return False
            else:
                raise NotImplementedError(operator)
    return True


class Policies:
    """The allow statements of one role, rendered."""

    def __init__(self, template: dict, role_fragment: str):
        self.statements = statements(template, role_fragment)
        assert self.statements, role_fragment
        assert all(s["Effect"] == "Allow" for s in self.statements)

    def allows(self, action: str, resource: str, **context) -> bool:
        return any(
            any(fnmatchcase(action, a) for a in actions([s]))
            and any(fnmatchcase(resource, r) for r in as_list(render(s["Resource"])))
            and condition_holds(s.get("Condition", {}), context)
            for s in self.statements
        )


class Names:
    """Rendered ARNs of the stack's resources."""

    def __init__(self, template: dict):
        def logical(kind, predicate=lambda p: True):
            (found,) = [k for k, v in resources(template, kind).items() if predicate(v["Properties"])]
            return found

        self.table = f"<{logical('AWS::DynamoDB::Table')}.Arn>"
        self.bucket = f"<{logical('AWS::S3::Bucket', lambda p: 'LoggingConfiguration' in p)}.Arn>"
        self.data_key = f"<{logical('AWS::KMS::Key', lambda p: p['Description'].startswith('Render farm data'))}.Arn>"
        self.secret = f"<{logical('AWS::SecretsManager::Secret')}>"
        by_name = {  # "render-high", ..., "render-dlq", "webhooks", "webhooks-dlq" (the stage prefix dropped)
            p["QueueName"].split("-", 1)[1]: f"<{k}.Arn>"
            for k, p in ((k, v["Properties"]) for k, v in resources(template, "AWS::SQS::Queue").items())
        }
        self.dlq = by_name.pop("render-dlq")
        self.webhook_queue = by_name.pop("webhooks")
        self.webhook_dlq = by_name.pop("webhooks-dlq")
        self.queues = {name.removeprefix("render-"): arn for name, arn in by_name.items()}
        assert set(self.queues) == {"high", "normal", "low"}, self.queues

    def index(self, name: str) -> str:
        return f"{self.table}/index/{name}"

    def object(self, key: str) -> str:
        return f"{self.bucket}/{key}"

    def api_key_secret(self, name: str) -> str:
        return f"arn:<AWS::Partition>:secretsmanager:{REGION}:<AWS::AccountId>:secret:{name}-AbCdEf"


@pytest.fixture(scope="module")
def stack(dev):
    raw, _ = dev
    return Names(raw), {role: Policies(raw, fragment) for role, fragment in ROLES.items()}


def item(pk: str) -> dict:
    return {"dynamodb:LeadingKeys": [pk]}


def via(service: str) -> dict:
    return {"kms:ViaService": f"{service}.{REGION}.amazonaws.com"}


# --- exact action sets ------------------------------------------------------------------------------

ECS_EXEC = {
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "logs:DescribeLogGroups",
    "logs:CreateLogStream",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "kms:Decrypt",  # the exec key
    "kms:GenerateDataKey",
}
DATA_KEY = {"kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"}
EXPECTED_ACTIONS = {
    "api": {
        *("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"),
        "dynamodb:BatchGetItem",
        "dynamodb:DescribeTable",
        *("sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"),
        *("s3:GetObject", "s3:PutObject", "s3:ListBucket"),
        *("secretsmanager:CreateSecret", "secretsmanager:PutSecretValue"),
        *("secretsmanager:TagResource", "secretsmanager:DescribeSecret"),
        "cloudwatch:GetMetricData",  # the farm status: age of the oldest message (no resource form)
        *DATA_KEY,
        *ECS_EXEC,
    },
    "worker": {
        *("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"),
        *("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"),
        *("sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"),
        *("s3:GetObject", "s3:PutObject"),
        *DATA_KEY,
        *ECS_EXEC,
    },
    "webhooks": {
        *("dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"),
        *("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"),
        *("sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"),
        "s3:GetObject",
        *DATA_KEY,
    },
    "sweeper": {
        *("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:Query"),
        *("sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"),
        *("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:PurgeQueue"),
        *DATA_KEY,
    },
}


@pytest.mark.parametrize("role", ROLES)
def test_each_role_has_exactly_its_actions(stack, role):
    _names, policies = stack
    assert actions(policies[role].statements) == EXPECTED_ACTIONS[role]


def test_every_dynamodb_item_action_is_limited_by_partition_key(stack):
    _names, policies = stack
    for role, policy in policies.items():
        for statement in policy.statements:
            if any(a.startswith("dynamodb:") and a != "dynamodb:DescribeTable" for a in actions([statement])):
                keys = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
                assert keys and all(k.endswith("#*") or k in ("APIKEYS", "WORKERS") for k in keys), (role, statement)
                assert not {"dynamodb:Scan", "dynamodb:BatchWriteItem"} & actions([statement])


def test_only_actions_without_a_resource_form_have_resource_star(dev):
    raw, _ = dev
    allowed = {
        "ecr:GetAuthorizationToken",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
        "logs:DescribeLogGroups",
        "cloudwatch:GetMetricData",
    }
    for policy in resources(raw, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert not any(a == "*" or a.endswith(":*") for a in actions([statement])), statement
            if statement["Resource"] == "*":
                assert actions([statement]) <= allowed, statement


# --- what each role does, and what it cannot ---------------------------------------------------------


def test_workers_touch_job_items_and_record_what_they_read_of_scene_files(stack):
    names, policies = stack
    worker = policies["worker"]
    for action in ("GetItem", "UpdateItem", "PutItem", "Query"):  # claim, progress, fan-out, a job's tasks
        assert worker.allows(f"dynamodb:{action}", names.table, **item("JOB#01HX")), action
    for action in ("GetItem", "UpdateItem"):  # a scene file's inspection, recorded on its asset item
        assert worker.allows(f"dynamodb:{action}", names.table, **item("ASSET#0f1e#ab12")), action
    assert not worker.allows("dynamodb:PutItem", names.table, **item("ASSET#0f1e#ab12"))  # declaring is the API's
    for pk in ("APIKEY#ab12", "IDEMPOTENCY#alice#k1", "THROTTLE#key#123", "SESSION#s1"):
        for action in ("GetItem", "UpdateItem", "PutItem"):
            assert not worker.allows(f"dynamodb:{action}", names.table, **item(pk)), (action, pk)
    assert not worker.allows("dynamodb:DeleteItem", names.table, **item("JOB#01HX"))
    for action in ("GetItem", "PutItem", "UpdateItem"):  # render workers deliver no webhook: no secret, no slots
        assert not worker.allows(f"dynamodb:{action}", names.table, **item("HOOKSECRET#alice")), action
        assert not worker.allows(f"dynamodb:{action}", names.table, **item("HOOKSLOTS#alice")), action
    assert not worker.allows("dynamodb:Scan", names.table)
    for index in ("gsi1", "gsi2"):
        assert not worker.allows("dynamodb:Query", names.index(index), **item("JOB#QUEUED")), index


def test_workers_consume_and_send_render_messages_but_never_touch_the_dlq(stack):
    names, policies = stack
    worker = policies["worker"]
    for queue in names.queues.values():
        for action in ("ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility", "GetQueueAttributes"):
            assert worker.allows(f"sqs:{action}", queue), action
        assert worker.allows("sqs:SendMessage", queue)
        assert not worker.allows("sqs:PurgeQueue", queue)
    for action in ("ReceiveMessage", "DeleteMessage", "SendMessage", "GetQueueAttributes", "PurgeQueue"):
        assert not worker.allows(f"sqs:{action}", names.dlq), action
    # A job it ends opens its delivery and sends its message; webhook workers alone take it.
    assert worker.allows("sqs:SendMessage", names.webhook_queue)
    for action in ("ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility"):
        assert not worker.allows(f"sqs:{action}", names.webhook_queue), action
    assert not worker.allows("sqs:ReceiveMessage", names.webhook_dlq)


def test_webhook_workers_consume_only_the_webhook_queue_and_touch_only_what_a_delivery_needs(stack):
    names, policies = stack
    hooks = policies["webhooks"]
    for action in ("ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility", "SendMessage"):  # + its retries
        assert hooks.allows(f"sqs:{action}", names.webhook_queue), action
    for queue in (*names.queues.values(), names.dlq, names.webhook_dlq):
        for action in ("ReceiveMessage", "SendMessage", "DeleteMessage", "PurgeQueue"):
            assert not hooks.allows(f"sqs:{action}", queue), (action, queue)
    # The job and its deliveries (read, lease, record, the latest by a Query), the owner's secret (read only) and
    # the owner's slots of deliveries in flight.
    for action in ("GetItem", "UpdateItem", "Query"):
        assert hooks.allows(f"dynamodb:{action}", names.table, **item("JOB#01HX")), action
    assert hooks.allows("dynamodb:GetItem", names.table, **item("HOOKSECRET#alice"))
    assert hooks.allows("dynamodb:UpdateItem", names.table, **item("HOOKSLOTS#alice"))
    for action in ("PutItem", "DeleteItem"):
        assert not hooks.allows(f"dynamodb:{action}", names.table, **item("JOB#01HX")), action
    assert not hooks.allows("dynamodb:UpdateItem", names.table, **item("HOOKSECRET#alice"))
    for pk in ("APIKEY#ab12", "OWNER#alice", "WORKERS", "SESSION#s1", "ASSET#x#y"):
        assert not hooks.allows("dynamodb:GetItem", names.table, **item(pk)), pk
    assert not hooks.allows("dynamodb:Scan", names.table)
    assert not hooks.allows("dynamodb:Query", names.index("gsi2"), **item("HOOK#PENDING"))  # the sweeper's
    # Result URLs in a COMPLETED job's body are presigned by this role: they work only if it may read them.
    frame = names.object("jobs/01HX/frames/00001.png")
    assert hooks.allows("s3:GetObject", frame) and not hooks.allows("s3:PutObject", frame)
    assert not hooks.allows("s3:GetObject", names.object("assets/0123/" + "a" * 64))
    assert hooks.allows("kms:Decrypt", names.data_key, **via("s3")) and not hooks.allows("kms:Decrypt", names.data_key)
    assert not hooks.allows("secretsmanager:GetSecretValue", names.secret)


def test_every_process_that_ends_a_job_may_send_its_delivery(stack):
    names, policies = stack
    for role in ("api", "worker", "sweeper"):  # a cancel; the render loop and assembly; dead letters, stalled cancels
        assert policies[role].allows("sqs:SendMessage", names.webhook_queue), role
        assert not policies[role].allows("sqs:ReceiveMessage", names.webhook_queue), role


def test_the_api_presigns_asset_uploads_and_keeps_their_records(stack):
    names, policies = stack
    api = policies["api"]
    scene = names.object("assets/0123456789abcdef0123456789abcdef/" + "a" * 64)
    assert api.allows("s3:PutObject", scene) and api.allows("s3:GetObject", scene)  # presigned PUT, Head, copy
    assert not api.allows("s3:DeleteObject", scene)
    assert not api.allows("s3:PutObject", names.object("jobs/01HX/frames/00001.png"))


def test_workers_read_and_write_result_objects_only(stack):
    names, policies = stack
    worker = policies["worker"]
    frame = names.object("jobs/01HX/frames/00001.png")
    assert worker.allows("s3:PutObject", frame) and worker.allows("s3:GetObject", frame)
    assert not worker.allows("s3:DeleteObject", frame)
    # Scene files: read (the renderer downloads them), never written.
    scene = names.object("assets/0123456789abcdef0123456789abcdef/" + "a" * 64)
    assert worker.allows("s3:GetObject", scene) and not worker.allows("s3:PutObject", scene)
    assert not worker.allows("s3:ListBucket", names.bucket)
    # The data key only through S3 and DynamoDB, never a direct KMS call.
    assert worker.allows("kms:GenerateDataKey", names.data_key, **via("s3"))
    assert worker.allows("kms:Decrypt", names.data_key, **via("dynamodb"))
    assert not worker.allows("kms:Decrypt", names.data_key)
    assert not worker.allows("secretsmanager:GetSecretValue", names.secret)


def test_the_sweeper_queries_gsi2_for_job_and_task_partitions_only(stack):
    names, policies = stack
    sweeper = policies["sweeper"]
    for partition in ("JOB#0", "JOB#7", "TASK#0", "TASK#7"):
        assert sweeper.allows("dynamodb:Query", names.index("gsi2"), **item(partition)), partition
    # The page's items, and its own position in each shard.
    assert sweeper.allows("dynamodb:BatchGetItem", names.table, **item("JOB#01HX"))
    for action in ("BatchGetItem", "UpdateItem"):
        assert sweeper.allows(f"dynamodb:{action}", names.table, **item("SWEEP#JOB#3")), action
    assert not sweeper.allows("dynamodb:PutItem", names.table, **item("SWEEP#JOB#3"))
    assert sweeper.allows("dynamodb:Query", names.index("gsi2"), **item("HOOK#PENDING"))  # webhook deliveries
    assert not sweeper.allows("dynamodb:GetItem", names.table, **item("HOOKSECRET#alice"))
    assert not sweeper.allows("dynamodb:Query", names.index("gsi2"), **item("APIKEYS#alice"))
    assert not sweeper.allows("dynamodb:Query", names.index("gsi1"), **item("OWNER#alice"))
    assert not sweeper.allows("dynamodb:Scan", names.index("gsi2"))
    for action in ("PutItem", "DeleteItem"):
        assert not sweeper.allows(f"dynamodb:{action}", names.table, **item("JOB#01HX")), action
    assert not sweeper.allows("dynamodb:GetItem", names.table, **item("APIKEY#ab12"))
    assert not sweeper.allows("dynamodb:GetItem", names.table, **item("TASK#PROCESSING"))  # not a table key


def test_the_sweeper_sends_render_messages_and_operates_the_dlq(stack):
    names, policies = stack
    sweeper = policies["sweeper"]
    for queue in names.queues.values():
        assert sweeper.allows("sqs:SendMessage", queue)
        for action in ("ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility", "PurgeQueue"):
            assert not sweeper.allows(f"sqs:{action}", queue), action
    assert not sweeper.allows("sqs:SendMessage", names.dlq)
    assert not sweeper.allows("s3:GetObject", names.object("jobs/01HX/manifest.json"))
    assert not sweeper.allows("kms:Decrypt", names.data_key, **via("s3"))


def test_the_api_has_its_items_its_indexes_and_no_dlq(stack):
    names, policies = stack
    api = policies["api"]
    requests = [
        ("PutItem", "JOB#01HX"),  # submit (its idempotency record put first)
        ("PutItem", "IDEMPOTENCY#alice#k1"),
        ("GetItem", "IDEMPOTENCY#alice#k1"),  # a replay
        ("DeleteItem", "JOB#01HX"),  # withdrawn when the enqueue fails (its record stays, for the retry)
        ("UpdateItem", "JOB#01HX"),  # cancel, retry
        ("Query", "JOB#01HX"),  # a job's tasks
        ("GetItem", "APIKEY#ab12"),  # authentication
        ("BatchGetItem", "JOB#1"),  # a listing's page, after a keys-only index Query
        ("UpdateItem", "THROTTLE#key#123"),  # rate counters
        ("GetItem", "SESSION#s1"),
        ("PutItem", "SESSION#s1"),
        ("DeleteItem", "SESSION#s1"),
        ("GetItem", "HOOKSECRET#alice"),  # submit with a callback_url: the owner has a secret
        ("UpdateItem", "HOOKSECRET#alice"),  # POST /api/webhook-secret
        ("BatchGetItem", "OWNER#alice"),  # a submit and /api/usage read the owner's budget and month's spend
        ("UpdateItem", "OWNER#alice"),  # the frames reserved; `manage.py budget`
    ]
    for action, pk in requests:
        assert api.allows(f"dynamodb:{action}", names.table, **item(pk)), (action, pk)
    assert api.allows("dynamodb:Query", names.index("gsi1"), **item("OWNER#alice"))
    assert not api.allows("dynamodb:DeleteItem", names.table, **item("IDEMPOTENCY#alice#k1"))  # TTL's alone
    assert api.allows("dynamodb:DescribeTable", names.table)  # /readyz
    assert api.allows("dynamodb:Query", names.index("gsi2"), **item("JOB#3"))  # farm status: jobs by state
    assert api.allows("dynamodb:BatchGetItem", names.table, **item("SWEEP#JOB#3"))  # ... from the sweeper's positions
    assert not api.allows("dynamodb:UpdateItem", names.table, **item("SWEEP#JOB#3"))
    assert not api.allows("dynamodb:Query", names.index("gsi2"), **item("TASK#3"))
    assert api.allows("dynamodb:Query", names.table, **item("WORKERS"))  # farm status: live workers
    assert not api.allows("dynamodb:PutItem", names.table, **item("WORKERS"))
    assert not api.allows("dynamodb:Scan", names.table)
    assert not api.allows("dynamodb:DeleteItem", names.table, **item("APIKEY#ab12"))  # keys are revoked, not deleted
    assert not api.allows("dynamodb:DeleteItem", names.table, **item("HOOKSECRET#alice"))
    assert not api.allows("dynamodb:GetItem", names.table, **item("OTHER#1"))
    for queue in names.queues.values():
        assert api.allows("sqs:SendMessage", queue) and api.allows("sqs:GetQueueAttributes", queue)
        assert not api.allows("sqs:ReceiveMessage", queue)
    for action in ("ReceiveMessage", "SendMessage", "DeleteMessage", "PurgeQueue"):
        assert not api.allows(f"sqs:{action}", names.dlq), action
    assert api.allows("sqs:GetQueueAttributes", names.dlq)  # farm status: DLQ depth, never its messages
    assert api.allows("s3:GetObject", names.object("jobs/01HX/frames/00001.png"))  # presigned GETs
    assert api.allows("s3:ListBucket", names.bucket)  # HeadBucket (/readyz)
    assert not api.allows("s3:PutObject", names.object("jobs/01HX/frames/00001.png"))
    assert api.allows("kms:Decrypt", names.data_key, **via("s3"))
    assert not api.allows("kms:Decrypt", names.data_key)


def test_the_api_may_store_api_keys_under_its_prefix_and_never_read_them_back(stack):
    names, policies = stack
    api = policies["api"]
    mine = names.api_key_secret("render-farm/dev/api-keys/alice")
    for action in ("CreateSecret", "PutSecretValue", "TagResource", "DescribeSecret"):
        assert api.allows(f"secretsmanager:{action}", mine), action
    assert not api.allows("secretsmanager:GetSecretValue", mine)
    assert not api.allows("secretsmanager:DeleteSecret", mine)
    for other in ("render-farm/prod/api-keys/alice", "render-farm/dev/other", "alice"):
        assert not api.allows("secretsmanager:CreateSecret", names.api_key_secret(other)), other


def test_the_api_knows_where_to_store_api_keys(dev):
    raw, _ = dev
    api = next(
        c
        for t in resources(raw, "AWS::ECS::TaskDefinition").values()
        for c in t["Properties"]["ContainerDefinitions"]
        if c["Name"] == "api"
    )
    env = {e["Name"]: e["Value"] for e in api["Environment"]}
    assert env["RENDER_API_KEY_SECRET_PREFIX"] == "render-farm/dev/api-keys/"


# --- operator commands: each runs in a task whose role allows every AWS call it makes -------------------
#
# API-key commands run in the API task (ECS exec); sweep and dlq in a sweeper task (the schedule, or
# `aws ecs run-task --overrides` with `manage dlq ...`, README "Deploy to AWS").


def table(pk):
    return lambda n: (n.table, item(pk))


def index(name, pk):
    return lambda n: (n.index(name), item(pk))


def render_queues(n):
    return [(q, {}) for q in n.queues.values()]


def dlq(n):
    return (n.dlq, {})


def webhook_dlq(n):
    return (n.webhook_dlq, {})


def secret(name):
    return lambda n: (n.api_key_secret(name), {})


def data_key(service):
    return lambda n: (n.data_key, via(service))


OPERATOR_COMMANDS = {
    "create_api_key --owner alice --secret-name render-farm/dev/api-keys/alice": (
        "api",
        [
            ("dynamodb:PutItem", table("APIKEY#ab12")),
            ("kms:GenerateDataKey", data_key("dynamodb")),
            ("secretsmanager:CreateSecret", secret("render-farm/dev/api-keys/alice")),
            ("secretsmanager:PutSecretValue", secret("render-farm/dev/api-keys/alice")),
            ("secretsmanager:DescribeSecret", secret("render-farm/dev/api-keys/alice")),
            ("secretsmanager:TagResource", secret("render-farm/dev/api-keys/alice")),
        ],
    ),
    "list_api_keys --owner alice": (
        "api",
        [("dynamodb:Query", index("gsi1", "APIKEYS#alice")), ("dynamodb:BatchGetItem", table("APIKEY#ab12"))],
    ),
    "revoke_api_key": (
        "api",
        [
            ("dynamodb:Query", index("gsi1", "APIKEYS#alice")),
            ("dynamodb:BatchGetItem", table("APIKEY#ab12")),
            ("dynamodb:GetItem", table("APIKEY#ab12")),
            ("dynamodb:UpdateItem", table("APIKEY#ab12")),
        ],
    ),
    "create_webhook_secret --owner alice": (
        "api",
        [("dynamodb:GetItem", table("HOOKSECRET#alice")), ("dynamodb:UpdateItem", table("HOOKSECRET#alice"))],
    ),
    "sweep": (
        "sweeper",
        [
            ("dynamodb:Query", index("gsi2", "JOB#QUEUED")),
            ("dynamodb:Query", index("gsi2", "HOOK#PENDING")),
            ("dynamodb:Query", index("gsi2", "TASK#PROCESSING")),
            ("dynamodb:GetItem", table("JOB#01HX")),
            ("dynamodb:UpdateItem", table("JOB#01HX")),  # postpone, fail dead-lettered, finish a cancel
            ("dynamodb:Query", table("JOB#01HX")),  # a job's tasks
            ("kms:Decrypt", data_key("dynamodb")),
            ("sqs:ReceiveMessage", dlq),
            ("sqs:SendMessage", render_queues),
            ("sqs:SendMessage", lambda n: (n.webhook_queue, {})),  # lost delivery messages; jobs it ends
        ],
    ),
    "dlq list": ("sweeper", [("sqs:ReceiveMessage", dlq), ("sqs:ChangeMessageVisibility", dlq)]),
    "dlq replay": (
        "sweeper",
        [
            ("sqs:ReceiveMessage", dlq),
            ("sqs:DeleteMessage", dlq),
            ("dynamodb:GetItem", table("JOB#01HX")),
            ("dynamodb:UpdateItem", table("JOB#01HX")),  # retry: a new attempt
            ("dynamodb:Query", table("JOB#01HX")),
            ("sqs:SendMessage", render_queues),
        ],
    ),
    "dlq purge": ("sweeper", [("sqs:PurgeQueue", dlq)]),
    "dlq list --queue webhooks": (
        "sweeper",
        [("sqs:ReceiveMessage", webhook_dlq), ("dynamodb:GetItem", table("JOB#01HX"))],  # the delivery's state
    ),
    "dlq replay --queue webhooks": (
        "sweeper",
        [
            ("sqs:ReceiveMessage", webhook_dlq),
            ("sqs:DeleteMessage", webhook_dlq),
            ("dynamodb:GetItem", table("JOB#01HX")),
            ("sqs:SendMessage", lambda n: (n.webhook_queue, {})),  # the pending delivery's message again
        ],
    ),
    "dlq purge --queue webhooks": ("sweeper", [("sqs:PurgeQueue", webhook_dlq)]),
}


@pytest.mark.parametrize("command", OPERATOR_COMMANDS)
def test_operator_commands_are_allowed_in_the_task_they_run_in(stack, command):
    names, policies = stack
    role, calls = OPERATOR_COMMANDS[command]
    for action, target in calls:
        targets = target(names)
        for resource, context in targets if isinstance(targets, list) else [targets]:
            assert policies[role].allows(action, resource, **context), (command, action, resource, context)


def test_the_dlq_commands_cannot_run_anywhere_else(stack):
    names, policies = stack
    for role in ("api", "worker", "webhooks"):
        for queue in (names.dlq, names.webhook_dlq):
            assert not policies[role].allows("sqs:PurgeQueue", queue)
            assert not policies[role].allows("sqs:ReceiveMessage", queue)
    assert not policies["sweeper"].allows("secretsmanager:CreateSecret", names.api_key_secret("render-farm/dev/x"))
    assert not policies["worker"].allows("dynamodb:PutItem", names.table, **item("APIKEY#ab12"))


def test_no_keyless_dynamodb_action_is_granted(stack):
    """`ForAllValues` is vacuously true for a request without a partition key (the evaluator too), so a
    LeadingKeys condition limits only actions that always name one: no Scan, no PartiQL. BatchGetItem names
    the partition key of every item it reads, so the condition holds for each (the listings use it)."""
    names, policies = stack
    assert policies["worker"].allows("dynamodb:GetItem", names.table)  # vacuous: no key in the request
    keyed = {f"dynamodb:{a}" for a in ("GetItem", "BatchGetItem", "PutItem", "UpdateItem", "DeleteItem", "Query")}
    for policy in policies.values():
        for statement in policy.statements:
            if "Condition" in statement and "dynamodb:LeadingKeys" in json.dumps(statement["Condition"]):
                assert actions([statement]) <= keyed, statement
