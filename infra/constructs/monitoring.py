"""Dashboard and alarms: queues, DLQ, job outcomes (from log events), API errors and latency, workers."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

NAMESPACE = "RenderFarm"


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        stage: str,
        queues: dict[str, sqs.IQueue],
        dlq: sqs.IQueue,
        worker_log_group: logs.ILogGroup,
        load_balancer: elbv2.ApplicationLoadBalancer,
        target_group: elbv2.ApplicationTargetGroup,
        running_workers: cw.IMetric,
        alarm_email: str | None,
        oldest_message_alarm_seconds: int,
        key: kms.IKey,
    ):
        super().__init__(scope, id)
        self.topic = sns.Topic(
            self, "Alarms", display_name=f"Render farm {stage} alarms", master_key=key, enforce_ssl=True
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        alarm_action = actions.SnsAction(self.topic)

        outcomes = {}
        for event, metric_name in (("job_completed", "JobsCompleted"), ("job_failed", "JobsFailed")):
            logs.MetricFilter(
                self,
                metric_name,
                log_group=worker_log_group,
                filter_pattern=logs.FilterPattern.literal(f'"{event} job="'),
                metric_namespace=NAMESPACE,
                metric_name=metric_name,
                metric_value="1",
                default_value=0,
            )
            outcomes[metric_name] = cw.Metric(
                namespace=NAMESPACE, metric_name=metric_name, statistic="Sum", period=Duration.minutes(5)
            )

        self.alarms: list[cw.Alarm] = []
        dlq_alarm = cw.Alarm(
            self,
            "DlqNotEmpty",
            metric=dlq.metric_approximate_number_of_messages_visible(period=Duration.minutes(1), statistic="Maximum"),
            threshold=0,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            alarm_description="Messages in the render DLQ: poison work (manage.py dlq list)",
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.alarms.append(dlq_alarm)
        for priority, queue in queues.items():
            self.alarms.append(
                cw.Alarm(
                    self,
                    f"OldestMessage{priority.capitalize()}",
                    metric=queue.metric_approximate_age_of_oldest_message(
                        period=Duration.minutes(1), statistic="Maximum"
                    ),
                    threshold=oldest_message_alarm_seconds,
                    evaluation_periods=5,
                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    alarm_description=f"{priority} render work waited longer than {oldest_message_alarm_seconds}s",
                    treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                )
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
        self.alarms.append(
            cw.Alarm(
                self,
                "Api5xxRate",
                metric=error_rate,
                threshold=5,
                evaluation_periods=2,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                alarm_description="More than 5% of API responses are 5xx",
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
        )
        for alarm in self.alarms:
            alarm.add_alarm_action(alarm_action)

        latency = target_group.metrics.target_response_time(period=Duration.minutes(5), statistic="p95")
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"render-farm-{stage}")
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Queue depth (visible)",
                width=12,
                left=[
                    q.metric_approximate_number_of_messages_visible(label=p, period=Duration.minutes(1))
                    for p, q in queues.items()
                ],
            ),
            cw.GraphWidget(
                title="Age of oldest message (s)",
                width=12,
                left=[
                    q.metric_approximate_age_of_oldest_message(label=p, period=Duration.minutes(1))
                    for p, q in queues.items()
                ],
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="DLQ depth",
                width=6,
                left=[dlq.metric_approximate_number_of_messages_visible(period=Duration.minutes(1))],
            ),
            cw.GraphWidget(
                title="Jobs completed / failed",
                width=6,
                left=[outcomes["JobsCompleted"]],
                right=[outcomes["JobsFailed"]],
            ),
            cw.GraphWidget(title="API 5xx % and p95 latency", width=6, left=[error_rate], right=[latency]),
            cw.GraphWidget(title="Running workers", width=6, left=[running_workers]),
        )
