"""CDK template assertions: each guarantee of the production stack, by resource properties."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Match

from tests.infra.conftest import ROOT

# One synth per configuration: keep these tests in one xdist worker (`--dist loadgroup`).
pytestmark = pytest.mark.xdist_group("cdk")


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def only(template: dict, kind: str, predicate=lambda r: True) -> dict:
    found = [r for r in resources(template, kind).values() if predicate(r)]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]["Properties"]


def only_item(template: dict, kind: str) -> tuple[str, dict]:
    found = resources(template, kind)
    assert len(found) == 1, f"{len(found)} {kind}"
    ((logical_id, resource),) = found.items()
    return logical_id, resource["Properties"]


def containers(template: dict) -> dict[str, dict]:
    """Container definitions by role (api, worker, sweeper)."""
    out = {}
    for task in resources(template, "AWS::ECS::TaskDefinition").values():
        for container in task["Properties"]["ContainerDefinitions"]:
            out[container["Name"]] = {**container, "task": task["Properties"]}
    return out


def env_of(container: dict) -> dict[str, object]:
    return {e["Name"]: e["Value"] for e in container["Environment"]}


def statements(template: dict, role_fragment: str) -> list[dict]:
    out = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if any(role_fragment in r["Ref"] for r in policy["Properties"]["Roles"]):
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def actions(stmts: list[dict]) -> set[str]:
    return {a for s in stmts for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


# --- network ------------------------------------------------------------------------------------


def test_vpc_over_two_azs_with_private_tasks_and_gateway_endpoints(dev):
    raw, template = dev
    subnets = resources(raw, "AWS::EC2::Subnet")
    assert len(subnets) == 4
    assert sum(s["Properties"]["MapPublicIpOnLaunch"] for s in subnets.values()) == 2
    template.resource_count_is("AWS::EC2::NatGateway", 1)
    endpoints = resources(raw, "AWS::EC2::VPCEndpoint").values()
    gateway = [
        json.dumps(e["Properties"]["ServiceName"]) for e in endpoints if e["Properties"]["VpcEndpointType"] == "Gateway"
    ]
    assert any(".s3" in s for s in gateway) and any(".dynamodb" in s for s in gateway)
    private = {k for k, s in subnets.items() if not s["Properties"]["MapPublicIpOnLaunch"]}
    for service in resources(raw, "AWS::ECS::Service").values():
        network = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["AssignPublicIp"] == "DISABLED"
        assert {s["Ref"] for s in network["Subnets"]} == private
    template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "REJECT"})


def test_interface_endpoints_are_opt_in(dev, prod):
    assert not [
        e
        for e in resources(dev[0], "AWS::EC2::VPCEndpoint").values()
        if e["Properties"]["VpcEndpointType"] == "Interface"
    ]
    names = [
        json.dumps(e["Properties"]["ServiceName"])
        for e in resources(prod[0], "AWS::EC2::VPCEndpoint").values()
        if e["Properties"]["VpcEndpointType"] == "Interface"
    ]
    for service in ("sqs", "ecr.api", "ecr.dkr", "logs", "secretsmanager"):
        assert any(f".{service}" in n for n in names), service


def test_only_the_load_balancer_reaches_the_api_tasks(dev):
    raw, _template = dev
    ingress = only(raw, "AWS::EC2::SecurityGroupIngress")
    assert ingress["FromPort"] == ingress["ToPort"] == 8000 and "SourceSecurityGroupId" in ingress
    for sg in resources(raw, "AWS::EC2::SecurityGroup").values():
        for rule in sg["Properties"].get("SecurityGroupIngress", []):
            assert rule.get("FromPort") in (80, 443), "only the ALB takes traffic from outside"


# --- API service ----------------------------------------------------------------------------------


def test_https_with_the_certificate_and_http_redirected(prod):
    raw, template = prod
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {
            "Port": 443,
            "Protocol": "HTTPS",
            "Certificates": [{"CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abcd-1234"}],
        },
    )
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {
            "Port": 80,
            "DefaultActions": [
                Match.object_like({"Type": "redirect", "RedirectConfig": Match.object_like({"Port": "443"})})
            ],
        },
    )
    assert env_of(containers(raw)["api"])["DJANGO_ALLOWED_HOSTS"] == "render.example.com"


def test_plain_http_only_without_a_certificate(dev):
    raw, _template = dev
    listener = only(raw, "AWS::ElasticLoadBalancingV2::Listener")
    assert listener["Port"] == 80 and listener["Protocol"] == "HTTP"
    assert listener["DefaultActions"][0]["Type"] == "forward"


def test_waf_guards_the_load_balancer_in_prod_with_the_common_rules_and_a_rate_limit(dev, prod):
    raw, _ = prod
    acl_id, acl = only_item(raw, "AWS::WAFv2::WebACL")
    assert acl["Scope"] == "REGIONAL" and acl["DefaultAction"] == {"Allow": {}}
    rules = {r["Name"]: r for r in acl["Rules"]}
    assert set(rules) == {"RatePerIp", "AWSManagedRulesCommonRuleSet"}
    rate = rules["RatePerIp"]
    assert rate["Action"] == {"Block": {}}
    assert rate["Statement"]["RateBasedStatement"] == {
        "Limit": 1500,  # wafRateLimit from the context (default 2000)
        "AggregateKeyType": "IP",
        "EvaluationWindowSec": 300,
    }
    common = rules["AWSManagedRulesCommonRuleSet"]
    assert common["OverrideAction"] == {"None": {}}
    group = common["Statement"]["ManagedRuleGroupStatement"]
    assert group["VendorName"] == "AWS" and group["Name"] == "AWSManagedRulesCommonRuleSet"
    # The API takes bodies up to 16 KiB; the rule set's 8 KB body limit only counts.
    assert group["RuleActionOverrides"] == [{"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]
    assert rate["Priority"] < common["Priority"]
    assert all(r["VisibilityConfig"]["CloudWatchMetricsEnabled"] for r in acl["Rules"])
    association = only(raw, "AWS::WAFv2::WebACLAssociation")
    assert association["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    alb = next(iter(resources(raw, "AWS::ElasticLoadBalancingV2::LoadBalancer")))
    assert association["ResourceArn"] == {"Ref": alb}
    assert not resources(dev[0], "AWS::WAFv2::WebACL"), "off by default on a non-production stage"


# --- production-grade unless the stage says otherwise ------------------------------------------------

DATA = ("AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::KMS::Key")


def deletion_policies(template: dict) -> set[tuple[str, str]]:
    """(kind, DeletionPolicy) of the table, the buckets and the KMS keys."""
    return {(kind, r["DeletionPolicy"]) for kind in DATA for r in resources(template, kind).values()}


def test_a_stage_of_any_other_name_is_production_grade_https_waf_and_retained(live, dev):
    raw, _ = live
    https = only(raw, "AWS::ElasticLoadBalancingV2::Listener", lambda r: r["Properties"]["Port"] == 443)
    assert https["Protocol"] == "HTTPS" and https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    http = only(raw, "AWS::ElasticLoadBalancingV2::Listener", lambda r: r["Properties"]["Port"] == 80)
    assert http["DefaultActions"][0]["Type"] == "redirect"
    assert http["DefaultActions"][0]["RedirectConfig"]["Protocol"] == "HTTPS"
    acl_id, _ = only_item(raw, "AWS::WAFv2::WebACL")
    association = only(raw, "AWS::WAFv2::WebACLAssociation")
    assert association["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert association["ResourceArn"] == {
        "Ref": next(iter(resources(raw, "AWS::ElasticLoadBalancingV2::LoadBalancer")))
    }
    assert deletion_policies(raw) == {(kind, "Retain") for kind in DATA}
    assert all(r.get("UpdateReplacePolicy") == "Retain" for kind in DATA for r in resources(raw, kind).values())
    assert not [r for r in raw["Resources"].values() if r["Type"] == "Custom::S3AutoDeleteObjects"]
    # ...while dev, a listed non-production stage, deletes its data with the stack and empties its buckets.
    assert deletion_policies(dev[0]) == {(kind, "Delete") for kind in DATA}
    assert [r for r in dev[0]["Resources"].values() if r["Type"] == "Custom::S3AutoDeleteObjects"]


def test_the_escape_hatches_lift_only_what_they_name(staging_plain):
    raw, _ = staging_plain
    listener = only(raw, "AWS::ElasticLoadBalancingV2::Listener")  # allowPlainHttp: one plain HTTP listener
    assert (
        listener["Port"] == 80 and listener["Protocol"] == "HTTP" and listener["DefaultActions"][0]["Type"] == "forward"
    )
    assert not resources(raw, "AWS::WAFv2::WebACL") and not resources(raw, "AWS::WAFv2::WebACLAssociation")
    assert deletion_policies(raw) == {(kind, "Retain") for kind in DATA}  # still production-grade data


def test_api_health_check_circuit_breaker_and_autoscaling(dev):
    raw, template = dev
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup", {"HealthCheckPath": "/healthz", "Port": 8000, "TargetType": "ip"}
    )
    api = containers(raw)["api"]
    assert api["Command"] == ["api"] and api["PortMappings"][0]["ContainerPort"] == 8000
    service = only(raw, "AWS::ECS::Service", lambda r: "LoadBalancers" in r["Properties"])
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert service["LaunchType"] == "FARGATE" and service["DesiredCount"] == 2
    metrics = {
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"][
            "PredefinedMetricType"
        ]
        for p in resources(raw, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if "TargetTrackingScalingPolicyConfiguration" in p["Properties"]
    }
    assert metrics == {"ECSServiceAverageCPUUtilization", "ALBRequestCountPerTarget"}


# --- workers --------------------------------------------------------------------------------------


def test_workers_run_on_spot_with_an_on_demand_base(dev, prod):
    for (raw, _), base in ((dev, 0), (prod, 1)):
        service = only(raw, "AWS::ECS::Service", lambda r: "CapacityProviderStrategy" in r["Properties"])
        assert service["CapacityProviderStrategy"] == [
            {"CapacityProvider": "FARGATE", "Base": base, "Weight": 0},
            {"CapacityProvider": "FARGATE_SPOT", "Weight": 1},
        ]
    worker = containers(dev[0])["worker"]
    assert worker["Command"][0] == "worker" and worker["StopTimeout"] == 120
    assert int(env_of(worker)["RENDER_SHUTDOWN_GRACE_SECONDS"]) < 120


def test_workers_are_sized_for_rendering_and_run_the_blender_image(dev):
    raw, _ = dev
    tasks = resources(raw, "AWS::ECS::TaskDefinition").values()
    worker = next(t["Properties"] for t in tasks if t["Properties"]["ContainerDefinitions"][0]["Name"] == "worker")
    api = next(t["Properties"] for t in tasks if t["Properties"]["ContainerDefinitions"][0]["Name"] == "api")
    assert [c["Name"] for c in worker["ContainerDefinitions"]] == ["worker", "sandbox"]
    assert (worker["Cpu"], worker["Memory"]) == ("4096", "8192")  # stage settings workerCpu, workerMemoryMib
    # The API prices a worker-second (quotes, budgets) by this task's size, as the stack tells it.
    api_env = env_of(api["ContainerDefinitions"][0])
    assert (api_env["RENDER_WORKER_VCPU"], api_env["RENDER_WORKER_MEMORY_GB"]) == ("4", "8")
    # Two image assets (Dockerfile targets api and worker): the worker's is not the API's.
    assert worker["ContainerDefinitions"][0]["Image"] != api["ContainerDefinitions"][0]["Image"]


def test_blender_runs_in_a_sandbox_container_of_the_worker_task(dev):
    """Fargate has no user namespaces (no bubblewrap): Blender runs in the task's `sandbox` container, which
    shares only the /sandbox volume with the worker and nothing of the application's settings or secrets."""
    raw, _ = dev
    roles = containers(raw)
    worker, sandbox = roles["worker"], roles["sandbox"]
    assert worker["task"] is not None and sandbox["task"] == worker["task"]  # one task, two containers
    assert "PidMode" not in worker["task"]  # each container keeps its own PID namespace
    assert sandbox["Command"] == ["sandbox"] and sandbox["User"] == "0" and sandbox["Essential"] is True
    assert sandbox["Image"] == worker["Image"]  # the worker image: Blender, and the sidecar's code
    env = env_of(sandbox)
    assert set(env) == {
        "RENDER_SANDBOX_SOCKET",
        "RENDER_SANDBOX_ROOT",
        "RENDER_SANDBOX_UID",
        "RENDER_SANDBOX_SLOTS",
        "RENDER_SANDBOX_WORKER_GID",
    }
    assert "Secrets" not in sandbox and int(env["RENDER_SANDBOX_UID"]) > 10001
    linux = sandbox["LinuxParameters"]
    assert linux["InitProcessEnabled"] is True and "Add" not in linux["Capabilities"]
    assert {"NET_RAW", "MKNOD", "SYS_CHROOT", "SETFCAP", "NET_BIND_SERVICE"} <= set(linux["Capabilities"]["Drop"])
    assert "--ping" in sandbox["HealthCheck"]["Command"]

    worker_env = env_of(worker)
    assert worker_env["RENDER_SANDBOX"] == "sidecar"
    assert worker_env["RENDER_SANDBOX_SOCKET"] == env["RENDER_SANDBOX_SOCKET"]
    assert env["RENDER_SANDBOX_ROOT"].startswith(worker_env["RENDER_BLENDER_CACHE_DIR"] + "/")
    assert worker["DependsOn"] == [{"ContainerName": "sandbox", "Condition": "HEALTHY"}]
    mounts = {c: {m["ContainerPath"]: m["SourceVolume"] for m in roles[c]["MountPoints"]} for c in roles}
    assert mounts["sandbox"]["/sandbox"] == mounts["worker"]["/sandbox"]
    assert "/tmp" not in mounts["sandbox"]  # nothing writable in it but the shared volume


def test_every_container_has_a_read_only_root_and_its_own_tmp(dev):
    raw, _ = dev
    for name, container in containers(raw).items():
        assert container["ReadonlyRootFilesystem"] is True, name
        if name != "sandbox":
            volume = {m["ContainerPath"]: m["SourceVolume"] for m in container["MountPoints"]}["/tmp"]
            assert volume in {v["Name"] for v in container["task"]["Volumes"]}


def test_workers_scale_on_backlog_per_task_down_to_zero(dev):
    raw, _template = dev
    target = only(raw, "AWS::ApplicationAutoScaling::ScalableTarget", lambda r: r["Properties"]["MinCapacity"] == 0)
    assert target["MaxCapacity"] == 20
    steps = [
        p["Properties"]["StepScalingPolicyConfiguration"]
        for p in resources(raw, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if "StepScalingPolicyConfiguration" in p["Properties"]
    ]
    assert len(steps) == 2  # scale out and scale in
    alarms = [
        a["Properties"]
        for a in resources(raw, "AWS::CloudWatch::Alarm").values()
        if any("Expression" in m for m in a["Properties"].get("Metrics", []))
        and "backlog" in json.dumps(a["Properties"]).lower()
    ]
    assert len(alarms) == 2
    metrics = json.dumps(alarms[0]["Metrics"])
    assert metrics.count("ApproximateNumberOfMessagesVisible") == 3
    assert metrics.count("ApproximateNumberOfMessagesNotVisible") == 3
    assert "RunningTaskCount" in metrics and "IF(FILL(tasks, 0) < 1" in metrics


# --- sweeper --------------------------------------------------------------------------------------


def test_sweeper_is_a_scheduled_fargate_task_of_the_api_image(dev):
    raw, _template = dev
    schedule = only(raw, "AWS::Scheduler::Schedule")
    assert schedule["ScheduleExpression"] == "rate(5 minutes)"
    assert schedule["Target"]["EcsParameters"]["TaskDefinitionArn"]["Ref"].startswith("SweeperTask")
    roles = containers(raw)
    assert roles["sweeper"]["Command"] == ["sweep"]
    # Operators run `manage dlq ...` in a sweeper task with run-task overrides (README): what they need.
    for output in ("ClusterName", "SweeperTaskDefinition", "SweeperSecurityGroup", "PrivateSubnets", "SweeperLogGroup"):
        assert output in raw["Outputs"], output
    assert roles["sweeper"]["Image"] == roles["api"]["Image"] != roles["worker"]["Image"]  # no Blender needed


# --- data -----------------------------------------------------------------------------------------


def test_table_keys_indexes_billing_recovery_ttl_and_kms(dev):
    raw, template = dev
    table = only(raw, "AWS::DynamoDB::Table")
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert {g["IndexName"]: [k["AttributeName"] for k in g["KeySchema"]] for g in table["GlobalSecondaryIndexes"]} == {
        "gsi1": ["gsi1pk", "gsi1sk"],
        "gsi2": ["gsi2pk", "gsi2sk"],
    }
    # Listings project keys only (they read the page's items in one BatchGetItem); gsi2 what the sweeper uses.
    assert {g["IndexName"]: g["Projection"] for g in table["GlobalSecondaryIndexes"]} == {
        "gsi1": {"ProjectionType": "KEYS_ONLY"},
        "gsi2": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["id", "job_id", "index", "attempt"]},
    }
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert types["gsi1pk"] == types["gsi2sk"] == "S" and "gsi3pk" not in types
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True and table["SSESpecification"]["SSEType"] == "KMS"
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_queues_encrypted_redriven_and_consistent_with_the_worker(dev):
    raw, _ = dev
    logical = {q["Properties"]["QueueName"]: k for k, q in resources(raw, "AWS::SQS::Queue").items()}
    queues = {q["Properties"]["QueueName"]: q["Properties"] for q in resources(raw, "AWS::SQS::Queue").values()}
    assert set(queues) == {
        *("dev-render-high", "dev-render-normal", "dev-render-low", "dev-render-dlq"),
        *("dev-webhooks", "dev-webhooks-dlq"),
    }
    worker_env = env_of(containers(raw)["worker"])
    for name in ("dev-render-high", "dev-render-normal", "dev-render-low", "dev-webhooks"):
        queue = queues[name]
        assert queue["SqsManagedSseEnabled"] is True
        assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
        # Render work to the render DLQ (whose letters fail jobs); deliveries to a DLQ of their own.
        dead = "dev-webhooks-dlq" if name == "dev-webhooks" else "dev-render-dlq"
        assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [logical[dead], "Arn"]}
        assert queue["VisibilityTimeout"] == int(worker_env["RENDER_VISIBILITY_TIMEOUT"]) == 15  # takeover < 20 s
        assert int(worker_env["RENDER_LEASE_SECONDS"]) < queue["VisibilityTimeout"]
        assert queue["ReceiveMessageWaitTimeSeconds"] == 20
        suffix = "webhooks" if name == "dev-webhooks" else f"render-{name.split('-')[-1]}"
        assert name == f"{worker_env['RENDER_QUEUE_PREFIX']}{suffix}"
    assert queues["dev-render-dlq"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queues["dev-webhooks-dlq"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    for policy in resources(raw, "AWS::SQS::QueuePolicy").values():
        deny = policy["Properties"]["PolicyDocument"]["Statement"][0]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    for role in ("RENDER_QUEUE_URL_HIGH", "RENDER_QUEUE_URL_NORMAL", "RENDER_QUEUE_URL_LOW"):
        assert role in worker_env  # predefined queues: workers never list or create queues
    # Every process may send a delivery's message (its queue is predefined too); the sweeper reads its DLQ.
    for role, container in containers(raw).items():
        if role == "sandbox":  # Blender's sidecar sends nothing (it has no network)
            continue
        assert env_of(container)["RENDER_QUEUE_URL_WEBHOOKS"] == {"Ref": logical["dev-webhooks"]}, role
        assert env_of(container)["RENDER_WEBHOOK_DLQ_URL"] == {"Ref": logical["dev-webhooks-dlq"]}, role


# --- webhook workers --------------------------------------------------------------------------------


def test_webhook_workers_are_a_small_always_on_service_of_the_api_image(dev):
    from django.conf import settings

    raw, _ = dev
    roles = containers(raw)
    hooks = roles["webhooks"]
    assert hooks["Command"] == ["webhooks", "--concurrency", "4"]  # stage setting webhookConcurrency
    assert hooks["Image"] == roles["api"]["Image"] != roles["worker"]["Image"]  # no Blender
    assert (hooks["task"]["Cpu"], hooks["task"]["Memory"]) == ("256", "1024")
    assert hooks["HealthCheck"]["Command"] == ["CMD", "python", "-m", "jobs.worker.healthcheck"]  # liveness file
    # Stopped (a deployment) only once its tries in flight have had their hard time limit.
    assert hooks["StopTimeout"] > settings.RENDER_WEBHOOK_TIME_LIMIT
    service = only(raw, "AWS::ECS::Service", lambda r: "Webhooks" in r["Properties"]["TaskDefinition"]["Ref"])
    assert service["DesiredCount"] == 1 and service["LaunchType"] == "FARGATE"  # on demand: always there
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert "WebhookServiceName" in raw["Outputs"]
    group = only(raw, "AWS::EC2::SecurityGroup", lambda r: "Webhook" in r["Properties"]["GroupDescription"])
    assert "SecurityGroupIngress" not in group  # outbound only: receivers are reached, nothing comes in


def test_results_bucket_private_tls_kms_lifecycle_and_logged(dev):
    raw, _ = dev
    results = only(raw, "AWS::S3::Bucket", lambda r: "LoggingConfiguration" in r["Properties"])
    assert results["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    sse = results["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms" and sse["BucketKeyEnabled"] is True
    rule, assets = results["LifecycleConfiguration"]["Rules"]
    assert rule["Prefix"] == "jobs/" and rule["ExpirationInDays"] == 90
    assert assets["Prefix"] == "assets/" and assets["ExpirationInDays"] == 30
    assert rule["Transitions"] == [{"StorageClass": "STANDARD_IA", "TransitionInDays": 30}]
    tls = [
        s
        for p in resources(raw, "AWS::S3::BucketPolicy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
    ]
    assert len(tls) == 2 and all(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in tls)


# --- IAM and secrets --------------------------------------------------------------------------------


def test_only_the_api_gets_the_django_secret_key(dev):
    raw, _ = dev
    secret = next(iter(resources(raw, "AWS::SecretsManager::Secret")))
    roles = containers(raw)
    assert [s["Name"] for s in roles["api"]["Secrets"]] == ["DJANGO_SECRET_KEY"]
    assert json.dumps(roles["api"]["Secrets"]).count(secret) == 1
    for role, container in roles.items():
        assert "DJANGO_SECRET_KEY" not in env_of(container)
        if role == "sandbox":  # runs no Django (test_blender_runs_in_a_sandbox_container_of_the_worker_task)
            assert "Secrets" not in container
            continue
        assert env_of(container)["RENDER_ENV"] == "production"
        assert env_of(container)["RENDER_ROLE"] == role  # the app needs no DJANGO_SECRET_KEY as worker or sweeper
        if role != "api":
            assert "Secrets" not in container, role
            assert secret not in json.dumps(container["task"]), role
    # Only the API's execution role (which injects it) may read the secret; no other policy names it.
    readers = [
        [r["Ref"] for r in p["Properties"]["Roles"]]
        for p in resources(raw, "AWS::IAM::Policy").values()
        if secret in json.dumps(p["Properties"]["PolicyDocument"])
    ]
    assert len(readers) == 1 and readers[0][0].startswith("ApiTaskExecutionRole"), readers


def test_ecs_exec_sessions_and_their_logs_are_encrypted_with_a_key_of_their_own(dev):
    raw, _ = dev
    exec_config = only(raw, "AWS::ECS::Cluster")["Configuration"]["ExecuteCommandConfiguration"]
    key_id = exec_config["KmsKeyId"]["Fn::GetAtt"][0]
    key = raw["Resources"][key_id]["Properties"]
    assert key["EnableKeyRotation"] is True and "exec" in key["Description"]
    assert key_id not in json.dumps(only(raw, "AWS::DynamoDB::Table")), "not the data key"
    assert exec_config["Logging"] == "OVERRIDE"
    assert exec_config["LogConfiguration"]["CloudWatchEncryptionEnabled"] is True
    group = raw["Resources"][exec_config["LogConfiguration"]["CloudWatchLogGroupName"]["Ref"]]["Properties"]
    assert group["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    # CloudWatch Logs may use the key, for this account's log groups only (the encryption context).
    logs = [
        s for s in key["KeyPolicy"]["Statement"] if s.get("Principal") == {"Service": "logs.us-east-1.amazonaws.com"}
    ]
    assert len(logs) == 1 and {"kms:Encrypt*", "kms:Decrypt*", "kms:GenerateDataKey*"} <= set(logs[0]["Action"])
    context = json.dumps(logs[0]["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
    assert ":logs:us-east-1:" in context and "AWS::AccountId" in context
    # The exec-enabled services' tasks can open the encrypted channel; operators are told how (README).
    for fragment in ("ApiTaskTaskRole", "WorkersTaskTaskRole"):
        assert any(
            s["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]} and "kms:Decrypt" in actions([s])
            for s in statements(raw, fragment)
        ), fragment
    assert "ExecKeyArn" in raw["Outputs"]


# --- observability --------------------------------------------------------------------------------


def test_log_groups_have_retention(dev):
    for group in resources(dev[0], "AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] == 30


def test_dashboard_shows_queues_dlq_jobs_api_and_workers(dev):
    body = json.dumps(only(dev[0], "AWS::CloudWatch::Dashboard")["DashboardBody"])
    assert '\\"label\\":\\"webhooks\\"' in body  # the webhook queue and its DLQ beside the render ones
    for metric in (
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "JobsFinished",
        "FramesRendered",
        "RenderSeconds",
        "QueueWait",
        "JobDuration",
        "ApiRequests",
        "ApiLatency",
        "RenderFarm/dev",
        "HTTPCode_Target_5XX_Count",
        "TargetResponseTime",
        "RunningTaskCount",
    ):
        assert metric in body, metric


def test_alarms_notify_the_topic(dev, prod):
    raw, template = dev
    alarms = [
        a["Properties"]
        for a in resources(raw, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("AlarmActions") and "Ref" in a["Properties"]["AlarmActions"][0]
    ]
    descriptions = " | ".join(a["AlarmDescription"] for a in alarms)
    assert "DLQ" in descriptions and "5xx" in descriptions and descriptions.count("waited longer") == 4
    dlqs = [a for a in alarms if "DLQ" in a["AlarmDescription"]]
    assert len(dlqs) == 2  # render work; webhook deliveries (`dlq list --queue webhooks`)
    assert "--queue webhooks" in " ".join(a["AlarmDescription"] for a in dlqs)
    for dlq in dlqs:
        assert dlq["Threshold"] == 0 and dlq["ComparisonOperator"] == "GreaterThanThreshold"
    assert "webhook deliveries waited longer" in descriptions
    prod[1].has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "oncall@example.com"})
    template.resource_count_is("AWS::SNS::Subscription", 0)
    assert not resources(raw, "AWS::Logs::MetricFilter")  # metrics come from the code (EMF), not text filters


def test_alarms_on_api_latency_auth_and_throttle_spikes_targets_dynamodb_and_crash_loops(dev):
    raw, _ = dev
    alarms = [a["Properties"] for a in resources(raw, "AWS::CloudWatch::Alarm").values()]

    def named(metric_name, **dimensions):
        found = [
            a
            for a in alarms
            if a.get("MetricName") == metric_name
            and {d["Name"]: d["Value"] for d in a.get("Dimensions", []) if d["Name"] != "TargetGroup"} == dimensions
        ]
        assert len(found) == 1, (metric_name, dimensions)
        return found[0]

    latency = named("ApiLatency")
    assert latency["Namespace"] == "RenderFarm/dev" and latency["ExtendedStatistic"] == "p95"
    assert latency["Threshold"] == 1000 and latency["DatapointsToAlarm"] == 3
    for status in ("401", "429"):
        spike = named("ApiRequests", Status=status)
        assert spike["Statistic"] == "Sum" and spike["Threshold"] > 0
    unhealthy = next(a for a in alarms if a.get("MetricName") == "UnHealthyHostCount")
    assert unhealthy["Namespace"] == "AWS/ApplicationELB" and unhealthy["Threshold"] == 0
    throttling = next(a for a in alarms if "DynamoDB throttled" in a["AlarmDescription"])
    used = json.dumps(throttling["Metrics"])
    assert "ReadThrottleEvents" in used and "WriteThrottleEvents" in used and throttling["Threshold"] == 0
    crash = named("WorkerStarts")
    assert crash["Namespace"] == "RenderFarm/dev" and crash["Period"] == 900 and crash["Threshold"] == 40
    assert all(a.get("AlarmActions") for a in alarms)


def test_containers_write_metrics_to_the_stage_namespace(dev):
    raw, _ = dev
    for task in resources(raw, "AWS::ECS::TaskDefinition").values():
        for container in task["Properties"]["ContainerDefinitions"]:
            if container["Name"] != "sandbox":  # the sidecar writes logs, no metrics
                env = {e["Name"]: e.get("Value") for e in container.get("Environment", [])}
                assert env["RENDER_METRICS_NAMESPACE"] == "RenderFarm/dev"


# --- whole-template checks --------------------------------------------------------------------------


def test_cfn_lint_is_clean_but_for_cdks_own_w3005(dev, prod, tmp_path):
    paths = []
    for name, (raw, _) in (("dev", dev), ("prod", prod)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(raw))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--ignore-checks", "W3005", "--", *map(str, paths)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cdk_nag_acknowledgments_all_have_reasons():
    from infra.nag import RULES, WILDCARDS

    assert all(len(reason) > 40 for reason in [*RULES.values(), *WILDCARDS.values()])


def test_the_app_synthesizes_offline_from_cdk_json(tmp_path):
    env = {
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDK_OUTDIR": str(tmp_path),
        "CDK_CONTEXT_JSON": json.dumps(json.loads((ROOT / "cdk.json").read_text())["context"]),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run([sys.executable, "-m", "infra.app"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    template = json.loads((tmp_path / "RenderFarm-dev.template.json").read_text())
    assert len(template["Resources"]) > 50


def config_from(context: dict):
    import aws_cdk as cdk

    from infra.config import StageConfig

    return StageConfig.from_context(cdk.App(context=context).node)


@pytest.mark.parametrize(
    "bad",
    [
        {"infrequentAccessAfterDays": "10"},
        {"workerStopTimeoutSeconds": "300"},
        {"leaseSeconds": "120"},
        {"wafRateLimit": "5"},
        {"webhookWorkerCount": "0"},
        {"webhookConcurrency": "0"},
    ],
)
def test_bad_context_is_refused(bad):
    with pytest.raises(ValueError):
        config_from(bad)


TLS = {"certificateArn": "arn:aws:acm:us-east-1:1:certificate/x"}


@pytest.mark.parametrize("stage", ["prod", "production", "live", "prd", "staging", "Dev", "dev2", "qa"])
def test_every_stage_but_the_listed_ones_is_production_grade_and_needs_tls(stage):
    with pytest.raises(ValueError, match=rf"stage={stage} is production-grade.*certificateArn.*allowPlainHttp=true"):
        config_from({"stage": stage})
    with pytest.raises(ValueError, match="certificateArn"):
        config_from({"stage": stage, "allowPlainHttp": "false"})
    config = config_from({"stage": stage, **TLS})
    assert config.production is True and config.waf_enabled is True
    plain = config_from({"stage": stage, "allowPlainHttp": "true"})  # a throwaway test stack, said explicitly
    assert plain.certificate_arn is None and plain.production is True and plain.waf_enabled is True


@pytest.mark.parametrize("stage", ["dev", "test", "ci"])
def test_the_listed_non_production_stages_may_serve_plain_http_without_waf(stage):
    config = config_from({"stage": stage})
    assert config.production is False and config.certificate_arn is None and config.waf_enabled is False
    assert config_from({"stage": stage, "production": "true", **TLS}).waf_enabled is True  # opting in
    with pytest.raises(ValueError, match="certificateArn"):
        config_from({"stage": stage, "production": "true"})


def test_production_false_makes_any_stage_a_throwaway_one():
    config = config_from({"stage": "dev-alice", "production": "false"})
    assert config.production is False and config.waf_enabled is False and config.certificate_arn is None


@pytest.mark.parametrize("key", ["production", "allowPlainHttp", "wafEnabled", "interfaceEndpoints"])
@pytest.mark.parametrize("value", ["flase", "", "on", "2"])
def test_a_flag_that_is_not_true_or_false_is_refused_not_read_as_false(key, value):
    with pytest.raises(ValueError, match=f"{key} must be true or false"):
        config_from({"stage": "prod", **TLS, key: value})


def test_flags_accept_true_false_in_any_case_and_json_booleans():
    assert config_from({"stage": "prod", **TLS, "wafEnabled": "FALSE"}).waf_enabled is False
    assert config_from({"stage": "prod", **TLS, "wafEnabled": False}).waf_enabled is False
    assert config_from({"stage": "dev", "wafEnabled": True}).waf_enabled is True
    assert config_from({"stage": "dev", "interfaceEndpoints": "Yes"}).interface_endpoints is True


def test_waf_is_on_by_default_on_production_grade_stages_and_its_rate_limit_is_configurable():
    assert config_from({"stage": "prod", **TLS}).waf_enabled is True
    assert config_from({"stage": "prod", **TLS, "wafEnabled": "false"}).waf_enabled is False
    assert config_from({}).waf_enabled is False
    assert config_from({"stage": "test", "wafEnabled": "true"}).waf_enabled is True
    assert config_from({}).waf_rate_limit == 2000
    assert config_from({"wafRateLimit": "300"}).waf_rate_limit == 300
