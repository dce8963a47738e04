"""What each task role may do to the table, queues, bucket, keys and secrets: exact actions, no broad grants.

The DynamoDB items of the one table (docs/ARCHITECTURE.md) are told apart by their partition key's prefix, so a
role is limited to its items with the `dynamodb:LeadingKeys` condition:
- `JOB#<id>`: a job (`sk=JOB`) and its chunks (`sk=TASK#nnnnn`), the only items workers and the sweeper touch;
- `APIKEY#<sha256>`, `IDEMPOTENCY#<owner>#<key>`, `THROTTLE#<subject>#<window>`, `SESSION#...`: the API's;
- `HOOKSECRET#<owner>`: an owner's webhook signing secret, written by the API, read by the API and the webhook
  workers; `HOOKSLOTS#<owner>`: the owner's slots of deliveries in flight, the webhook workers' alone.
A job's webhook deliveries are items of its own partition (`JOB#<id>`, `sk=HOOK#<attempt>#<status>`): every
process that ends a job opens one; only webhook workers lease and record them.

`ForAllValues:StringLike` on `dynamodb:LeadingKeys` is vacuously true for a request that names no
partition key (a Scan), so no statement here allows Scan or any other keyless action on items.

Indexes are resources of their own (`<table>/index/<name>`): a grant on the table does not cover them.
For a Query on an index, `dynamodb:LeadingKeys` holds the partition key value of the request's key
condition, i.e. the index's partition key (gsi2pk), not the table's pk of the items it returns. That is
still a limit to job items: only job and task items carry gsi1/gsi2 attributes of those prefixes.

Transactions need no action of their own: each Put/Update/Delete/ConditionCheck in a
TransactWriteItems is authorized as PutItem/UpdateItem/DeleteItem/ConditionCheckItem on its own key.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs

from jobs.repository import partitions as P  # the table's key prefixes, named once

GET, PUT, UPDATE, DELETE, QUERY = (f"dynamodb:{a}" for a in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"))
BATCH_GET = "dynamodb:BatchGetItem"  # the listings read a page's items after a keys-only index Query


def items(prefix: str) -> str:
    """The `dynamodb:LeadingKeys` pattern of every partition with this prefix."""
    return f"{prefix}*"


JOB_ITEMS = items(P.JOB)

# Workers: claim/progress/finish are conditional UpdateItems (alone or in transactions), the fan-out
# creates task items with conditional PutItems, reads are GetItem and a Query of a job's partition.
# `OWNER#<owner>` (sk USAGE): the owner's frames waiting or rendering and worker-seconds by month, settled
# when a job ends (in batches in a render worker); (sk BUDGET) its budget.
USAGE_ITEMS = items(P.OWNER)
# `WORKERS` (sk `WORKER#<id>`): each worker process's heartbeat item, a plain put every few seconds.
WORKERS_PARTITION = P.WORKERS
WEBHOOK_SECRETS = items(P.HOOKSECRET)
ASSET_ITEMS = items(P.ASSET)  # declared scene files and, once a worker's Blender read one, its settings
WORKER_ITEMS = {
    JOB_ITEMS: (GET, PUT, UPDATE, QUERY),
    USAGE_ITEMS: (UPDATE,),
    WORKERS_PARTITION: (PUT,),
    ASSET_ITEMS: (GET, UPDATE),  # a scene file's inspection: read it, record what Blender found
}
# Webhook workers: the job (its body) and its delivery items (GetItem, the lease and the outcome as conditional
# UpdateItems, the latest delivery by a Query of the job's partition), the owner's secret (to sign, read only)
# and the owner's slots of deliveries in flight (conditional UpdateItems).
WEBHOOK_ITEMS = {
    JOB_ITEMS: (GET, UPDATE, QUERY),
    WEBHOOK_SECRETS: (GET,),
    items(P.HOOKSLOTS): (UPDATE,),
}
# The sweeper (and `manage.py dlq` in its task): reads (one BatchGetItem per page of its index) and
# conditional updates of job items, and its own position in each shard of gsi2 (`SWEEP#<shard>`).
SWEEP_POSITIONS = items(P.SWEEP)
SWEEPER_ITEMS = {
    JOB_ITEMS: (GET, BATCH_GET, UPDATE, QUERY),
    USAGE_ITEMS: (UPDATE,),
    SWEEP_POSITIONS: (BATCH_GET, UPDATE),
}
# gsi2, the index of work that could get stuck: partitions `JOB#<shard>` and `TASK#<shard>`, and
# `HOOK#PENDING` (webhook deliveries not done).
SWEEPER_INDEXES = {"gsi2": (JOB_ITEMS, items(P.CHUNK), items(P.HOOK))}
# The API: jobs (submit, withdraw on a failed enqueue, cancel, retry, a job's tasks), idempotency
# records (put before their job, read by a replay; never deleted: TTL expires them), API keys (lookup,
# create_api_key, revoke_api_key), rate counters (an atomic ADD) and browser sessions.
API_ITEMS = {
    JOB_ITEMS: (GET, BATCH_GET, PUT, UPDATE, DELETE, QUERY),
    items(P.IDEMPOTENCY): (GET, PUT),
    items(P.APIKEY): (GET, BATCH_GET, PUT, UPDATE),
    items(P.THROTTLE): (UPDATE,),
    items(P.SESSION): (GET, PUT, UPDATE, DELETE),
    USAGE_ITEMS: (BATCH_GET, UPDATE),  # a submit reads the owner's budget and spend (and `manage.py budget` sets it)
    WORKERS_PARTITION: (QUERY,),  # GET /api/farm and `farm_status` list the live workers
    SWEEP_POSITIONS: (BATCH_GET,),  # ... and count unfinished jobs from the sweeper's positions on
    ASSET_ITEMS: (GET, PUT, UPDATE),  # declared (POST /api/assets), kept by each job, their inspection asked for
    WEBHOOK_SECRETS: (GET, UPDATE),  # POST /api/webhook-secret, create_webhook_secret; submit checks one exists
}
# gsi1: an owner's jobs (`OWNER#<owner>`) and API keys (`APIKEYS#<owner>`: list/revoke by owner);
# gsi2: every API key in the fixed partition `APIKEYS` (list_api_keys, revoke by key id);
# gsi2 `JOB#<shard>` too: the farm status counts unfinished jobs by state there.
API_INDEXES = {
    "gsi1": (USAGE_ITEMS, items(f"{P.APIKEYS}#")),
    "gsi2": (P.APIKEYS, JOB_ITEMS),
}

QUEUE_SEND = ("sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl")
QUEUE_CONSUME = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
)
# The sweeper fails the jobs of dead letters; `manage.py dlq list|replay|purge` runs in its task.
DLQ_OPERATE = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:PurgeQueue",
)
# `manage.py create_api_key --secret-name ...` stores the new key here instead of printing it (the
# output of an ECS exec session is logged). No GetSecretValue: the API cannot read keys back.
API_KEY_SECRET_ACTIONS = (
    "secretsmanager:CreateSecret",
    "secretsmanager:PutSecretValue",
    "secretsmanager:TagResource",
    "secretsmanager:DescribeSecret",
)
# What S3 and DynamoDB ask KMS for on the caller's behalf when they use the data key.
DATA_KEY_ACTIONS = ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*")
RESULTS_PREFIX = "jobs/*"  # frames, manifests, previews and render logs: jobs/<id>/...
ASSETS_PREFIX = "assets/*"  # scene files: assets/<owner slug>/<sha256>


def api_key_secret_prefix(stage: str) -> str:
    return f"render-farm/{stage}/api-keys/"


def grant_items(role: iam.IRole, table: dynamodb.ITable, items: dict[str, tuple[str, ...]]) -> None:
    """The given actions on the table's items whose partition key matches each pattern."""
    for pattern, actions in items.items():
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=list(actions),
                resources=[table.table_arn],
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [pattern]}},
            )
        )


def grant_index_queries(role: iam.IRole, table: dynamodb.ITable, indexes: dict[str, tuple[str, ...]]) -> None:
    """Query on each named index, limited to index partitions matching its patterns."""
    for index, patterns in indexes.items():
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[QUERY],
                resources=[f"{table.table_arn}/index/{index}"],
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(patterns)}},
            )
        )


def grant_data_key(role: iam.IRole, key: kms.IKey, *, services: tuple[str, ...]) -> None:
    """The data key, only through the given services (`kms:ViaService`): never for direct KMS calls."""
    region = Stack.of(key).region
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=list(DATA_KEY_ACTIONS),
            resources=[key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": [f"{s}.{region}.amazonaws.com" for s in services]}},
        )
    )


def grant_queues(role: iam.IRole, queues: list[sqs.IQueue], actions: tuple[str, ...]) -> None:
    role.add_to_principal_policy(iam.PolicyStatement(actions=list(actions), resources=[q.queue_arn for q in queues]))


def grant_results(
    role: iam.IRole, bucket: s3.IBucket, actions: tuple[str, ...], *, prefix: str = RESULTS_PREFIX
) -> None:
    role.add_to_principal_policy(iam.PolicyStatement(actions=list(actions), resources=[bucket.arn_for_objects(prefix)]))


def grant_api_key_secrets(role: iam.IRole, stage: str) -> None:
    arn = Stack.of(role).format_arn(
        service="secretsmanager",
        resource="secret",
        resource_name=f"{api_key_secret_prefix(stage)}*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
    role.add_to_principal_policy(iam.PolicyStatement(actions=list(API_KEY_SECRET_ACTIONS), resources=[arn]))


def grant_least_privilege(
    *,
    api: iam.IRole,
    worker: iam.IRole,
    webhooks: iam.IRole,
    sweeper: iam.IRole,
    table: dynamodb.ITable,
    key: kms.IKey,
    results: s3.IBucket,
    render_queues: list[sqs.IQueue],
    dlq: sqs.IQueue,
    webhook_queue: sqs.IQueue,
    webhook_dlq: sqs.IQueue,
    stage: str,
) -> None:
    """Every data-plane permission of the four task roles (ECS adds its own for logs and ECS exec)."""
    grant_items(api, table, API_ITEMS)
    grant_index_queries(api, table, API_INDEXES)
    api.add_to_principal_policy(  # /readyz
        iam.PolicyStatement(actions=["dynamodb:DescribeTable"], resources=[table.table_arn])
    )
    grant_queues(api, render_queues, QUEUE_SEND)  # submit, retry; /readyz reads an attribute
    grant_queues(api, [webhook_queue], QUEUE_SEND)  # a cancel that ends a QUEUED job notifies at once
    # Presigned GETs are signed with the API's credentials; HeadBucket (/readyz) needs ListBucket.
    grant_results(api, results, ("s3:GetObject",))  # presigned result GETs, render logs
    # Scene files: presigned PUTs, HeadObject checks, the copy in place that keeps a used file from expiring.
    grant_results(api, results, ("s3:GetObject", "s3:PutObject"), prefix=ASSETS_PREFIX)
    api.add_to_principal_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[results.bucket_arn]))
    grant_data_key(api, key, services=("dynamodb", "s3"))
    grant_api_key_secrets(api, stage)
    # The farm status (GET /api/farm, `farm_status` in an API task): the DLQ's depth, an attribute only,
    # and the age of the oldest message, which SQS publishes only to CloudWatch (no resource form).
    grant_queues(api, [dlq], ("sqs:GetQueueAttributes", "sqs:GetQueueUrl"))
    api.add_to_principal_policy(iam.PolicyStatement(actions=["cloudwatch:GetMetricData"], resources=["*"]))

    grant_items(worker, table, WORKER_ITEMS)
    # Consume, and send: the fan-out's chunk messages, retries with backoff, a chunk released at shutdown.
    grant_queues(worker, render_queues, (*QUEUE_CONSUME, "sqs:SendMessage"))
    grant_results(worker, results, ("s3:GetObject", "s3:PutObject"))  # frames, manifest, logs; preview reads frames
    grant_results(worker, results, ("s3:GetObject",), prefix=ASSETS_PREFIX)  # the scene files it renders
    grant_data_key(worker, key, services=("dynamodb", "s3"))
    grant_queues(worker, [webhook_queue], QUEUE_SEND)  # a job it ends (completed, failed, cancelled) notifies

    grant_items(webhooks, table, WEBHOOK_ITEMS)
    # Consume deliveries, and send their retries (SQS-delayed messages) to the same queue; never the DLQ.
    grant_queues(webhooks, [webhook_queue], (*QUEUE_CONSUME, "sqs:SendMessage"))
    # A COMPLETED job's body carries presigned result URLs, which work with the signer's own permissions.
    grant_results(webhooks, results, ("s3:GetObject",))
    grant_data_key(webhooks, key, services=("dynamodb", "s3"))

    grant_items(sweeper, table, SWEEPER_ITEMS)
    grant_index_queries(sweeper, table, SWEEPER_INDEXES)
    grant_queues(sweeper, render_queues, QUEUE_SEND)  # re-enqueue overdue work; dlq replay
    grant_queues(sweeper, [dlq], DLQ_OPERATE)  # fail the jobs of dead letters; dlq list|replay|purge
    # Pending deliveries whose message was lost, jobs it ends (dead letters, stalled cancels), dlq replay.
    grant_queues(sweeper, [webhook_queue], QUEUE_SEND)
    grant_queues(sweeper, [webhook_dlq], DLQ_OPERATE)  # dlq list|replay|purge --queue webhooks
    grant_data_key(sweeper, key, services=("dynamodb",))
