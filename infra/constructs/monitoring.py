"""Dashboard and alarms: render and webhook queues, their DLQs, jobs, frames and API from the metrics the code writes
(embedded metric format: jobs/adapters/metrics.py), load balancer targets, DynamoDB throttling, workers."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

NAMESPACE = "RenderFarm"


def metrics_namespace(stage: str) -> str:
    """Where the code's embedded metrics land (RENDER_METRICS_NAMESPACE of every container)."""
    return f"{NAMESPACE}/{stage}"


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        stage: str,
        queues: dict[str, sqs.IQueue],
        dlq: sqs.IQueue,
        webhook_queue: sqs.IQueue,
        webhook_dlq: sqs.IQueue,
        worker_log_group: logs.ILogGroup,
        load_balancer: elbv2.ApplicationLoadBalancer,
        target_group: elbv2.ApplicationTargetGroup,
        running_workers: cw.IMetric,
        alarm_email: str | None,
        oldest_message_alarm_seconds: int,
        key: kms.IKey,
        table: dynamodb.ITable,
        worker_max_processes: int,
    ):
        super().__init__(scope, id)
        self.topic = sns.Topic(
            self, "Alarms", display_name=f"Render farm {stage} alarms", master_key=key, enforce_ssl=True
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        alarm_action = actions.SnsAction(self.topic)

        namespace = metrics_namespace(stage)

        def metric(name: str, statistic: str = "Sum", minutes: int = 5, **dimensions: str) -> cw.Metric:
            return cw.Metric(
                namespace=namespace,
                metric_name=name,
                statistic=statistic,
                period=Duration.minutes(minutes),
                dimensions_map=dimensions or None,
            )

        outcomes = {o: metric("JobsFinished", Outcome=o) for o in ("COMPLETED", "FAILED")}
        self.alarms: list[cw.Alarm] = []

        def alarm(name: str, watched: cw.IMetric, *, threshold: float, periods: int, description: str, **more) -> None:
            """An alarm above `threshold` for `periods` periods; no data is not a breach."""
            made = cw.Alarm(
                self,
                name,
                metric=watched,
                threshold=threshold,
                evaluation_periods=periods,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                alarm_description=description,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                **more,
            )
            self.alarms.append(made)

        alarm(
            "DlqNotEmpty",
            dlq.metric_approximate_number_of_messages_visible(period=Duration.minutes(1), statistic="Maximum"),
            threshold=0,
            periods=1,
            description="Messages in the render DLQ: poison work (manage.py dlq list)",
        )
        for priority, queue in queues.items():
            alarm(
                f"OldestMessage{priority.capitalize()}",
                queue.metric_approximate_age_of_oldest_message(period=Duration.minutes(1), statistic="Maximum"),
                threshold=oldest_message_alarm_seconds,
                periods=5,
                description=f"{priority} render work waited longer than {oldest_message_alarm_seconds}s",
            )
        # Webhook deliveries: a message waits at most its backoff (900 s) in a healthy farm, and every retry is a
        # new message, so an old one means the webhook workers are gone or stuck.
        alarm(
            "WebhookDlqNotEmpty",
            webhook_dlq.metric_approximate_number_of_messages_visible(period=Duration.minutes(1), statistic="Maximum"),
            threshold=0,
            periods=1,
            description="Messages in the webhook DLQ: deliveries no webhook worker could finish, their jobs untouched "
            "(manage.py dlq list --queue webhooks)",
        )
        alarm(
            "OldestMessageWebhooks",
            webhook_queue.metric_approximate_age_of_oldest_message(period=Duration.minutes(1), statistic="Maximum"),
            threshold=oldest_message_alarm_seconds,
            periods=5,
            description=f"webhook deliveries waited longer than {oldest_message_alarm_seconds}s",
        )
        requests = load_balancer.metrics.request_count(period=Duration.minutes(5))
        errors = target_group.metrics.http_code_target(
            elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=Duration.minutes(5)
        )
        error_rate = cw.MathExpression(
            expression="100 * FILL(errors, 0) / MAX([FILL(requests, 0), 1])",
            using_metrics={"errors": errors, "requests": requests},
            label="API 5xx %",
            period=Duration.minutes(5),
        )
        alarm("Api5xxRate", error_rate, threshold=5, periods=2, description="More than 5% of API responses are 5xx")
        api_p95 = metric("ApiLatency", statistic="p95", minutes=1)
        alarm(
            "ApiLatencyP95",
            api_p95,
            threshold=1000,
            periods=5,
            datapoints_to_alarm=3,
            description="API p95 latency above 1 s (3 of 5 minutes)",
        )
        for status, threshold, what in ((401, 300, "unauthenticated"), (429, 300, "throttled")):
            alarm(
                f"Api{status}Spike",
                metric("ApiRequests", Status=str(status)),
                threshold=threshold,
                periods=1,
                description=f"More than {threshold} {status} ({what}) API answers in 5 minutes",
            )
        alarm(
            "UnhealthyApiTargets",
            target_group.metrics.unhealthy_host_count(period=Duration.minutes(1), statistic="Maximum"),
            threshold=0,
            periods=3,
            description="Unhealthy API targets behind the load balancer for 3 minutes",
        )
        throttled = cw.MathExpression(
            expression="FILL(r, 0) + FILL(w, 0)",
            using_metrics={
                "r": table.metric("ReadThrottleEvents", statistic="Sum", period=Duration.minutes(5)),
                "w": table.metric("WriteThrottleEvents", statistic="Sum", period=Duration.minutes(5)),
            },
            label="DynamoDB throttle events",
            period=Duration.minutes(5),
        )
        alarm(
            "DynamoDbThrottling",
            throttled,
            threshold=0,
            periods=2,
            description="DynamoDB throttled reads or writes of the table (10 minutes in a row)",
        )
        # Each worker pool process start is a WorkerStarts; scaling the farm to its maximum starts at most
        # worker_max_processes in a window. Far more means processes (or tasks) die and restart: a crash loop.
        alarm(
            "WorkersCrashLooping",
            metric("WorkerStarts", minutes=15),
            threshold=2 * max(worker_max_processes, 1),
            periods=1,
            description="Worker processes restarting far more than scaling explains (crash loop)",
        )
        for alarm in self.alarms:
            alarm.add_alarm_action(alarm_action)

        latency = target_group.metrics.target_response_time(period=Duration.minutes(5), statistic="p95")
        all_queues = {**queues, "webhooks": webhook_queue}
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"render-farm-{stage}")
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Queue depth (visible)",
                width=12,
                left=[
                    q.metric_approximate_number_of_messages_visible(label=p, period=Duration.minutes(1))
                    for p, q in all_queues.items()
                ],
            ),
            cw.GraphWidget(
                title="Age of oldest message (s)",
                width=12,
                left=[
                    q.metric_approximate_age_of_oldest_message(label=p, period=Duration.minutes(1))
                    for p, q in all_queues.items()
                ],
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="DLQ depth (render, webhooks)",
                width=6,
                left=[
                    q.metric_approximate_number_of_messages_visible(label=label, period=Duration.minutes(1))
                    for label, q in (("render", dlq), ("webhooks", webhook_dlq))
                ],
            ),
            cw.GraphWidget(
                title="Jobs completed / failed",
                width=6,
                left=[outcomes["COMPLETED"]],
                right=[outcomes["FAILED"]],
            ),
            cw.GraphWidget(title="API 5xx % and p95 latency", width=6, left=[error_rate], right=[latency, api_p95]),
            cw.GraphWidget(title="Running workers", width=6, left=[running_workers]),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Frames rendered; render seconds per frame (p50, p95)",
                width=8,
                left=[metric("FramesRendered", minutes=1)],
                right=[metric("RenderSeconds", "p50", 1), metric("RenderSeconds", "p95", 1)],
            ),
            cw.GraphWidget(
                title="Queue wait (submit to claim) and job duration, p95 (s)",
                width=8,
                left=[metric("QueueWait", "p95")],
                right=[metric("JobDuration", "p95", Outcome="COMPLETED")],
            ),
            cw.GraphWidget(
                title="API requests by status; worker starts",
                width=8,
                left=[metric("ApiRequests", Status=str(s)) for s in (200, 201, 400, 401, 403, 404, 409, 429, 503)],
                right=[metric("WorkerStarts")],
            ),
        )
