"""The table's key vocabulary, named once: every item's partition-key prefix and fixed sort key. The repository
builds every key from these, and infra/access.py grants each role its partitions by the same names
(`<prefix>*` in a `dynamodb:LeadingKeys` condition).

Partition keys: `<PREFIX><id>`. The two kinds of work share the job's partition and index partitions of
gsi2 by kind (`JOB#<shard>`, `TASK#<shard>`): a chunk is called a task in the table and the API.
"""

from __future__ import annotations

from jobs.ports.values import WorkKind

JOB_KIND = WorkKind.JOB.value  # a job item: pk JOB#<id>, sk JOB; gsi2 partitions JOB#<shard>
CHUNK_KIND = WorkKind.CHUNK.value  # a chunk item: pk JOB#<id>, sk TASK#<index:05d>; gsi2 TASK#<shard>
JOB = f"{JOB_KIND}#"
CHUNK = f"{CHUNK_KIND}#"  # the sort-key prefix of a job's chunks
HOOK = "HOOK#"  # the sort-key prefix of a job's webhook deliveries (HOOK#<attempt>#<status>); gsi2 HOOK#PENDING
HOOK_PENDING = f"{HOOK}PENDING"
OWNER = "OWNER#"  # an owner's usage item (sk USAGE); the owner listing's index partitions (gsi1)
USAGE = "USAGE"
SPEND = "SPEND#"  # earlier versions' worker-seconds of a month: pk OWNER#<owner>, sk SPEND#<YYYY-MM> (read only)
BUDGET = "BUDGET"  # an owner's monthly budget in dollars: pk OWNER#<owner>, sk BUDGET
ASSET = "ASSET#"  # a declared scene file: ASSET#<owner slug>#<sha256>, sk ASSET
APIKEY = "APIKEY#"  # an API key by its hash, sk APIKEY
APIKEYS = "APIKEYS"  # the API keys' index partitions: gsi1 APIKEYS#<owner>, gsi2 APIKEYS
IDEMPOTENCY = "IDEMPOTENCY#"  # IDEMPOTENCY#<owner>#<key>, sk IDEMPOTENCY
THROTTLE = "THROTTLE#"  # THROTTLE#<subject>#<minute>, sk THROTTLE
SESSION = "SESSION#"  # a browser session by its key's hash, sk SESSION
HOOKSECRET = "HOOKSECRET#"  # an owner's webhook signing secret, sk HOOKSECRET
HOOKSLOTS = "HOOKSLOTS#"  # an owner's slots of webhook deliveries in flight, sk HOOKSLOTS
SWEEP = "SWEEP#"  # the sweeper's position in a shard of gsi2: pk SWEEP#<gsi2pk>, sk SWEEP
WORKERS = "WORKERS"  # the one partition of worker heartbeats (sk WORKER#<worker id>)
WORKER = "WORKER#"


def fixed_sort_key(prefix: str) -> str:
    """The sort key of a partition's single item is its prefix's name: `ASSET#` -> `ASSET`."""
    return prefix.rstrip("#")
