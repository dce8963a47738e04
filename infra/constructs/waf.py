"""AWS WAF in front of the API's load balancer: AWS's common rule set and a rate limit per client IP."""

from __future__ import annotations

from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

RATE_WINDOW_SECONDS = 300  # the rate-based rule counts each IP's requests over the last 5 minutes


def _visibility(metric: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True
    )


class ApiFirewall(Construct):
    """A REGIONAL web ACL associated with the ALB.

    - `RatePerIp` (evaluated first, cheapest): blocks a client IP that sent more than `rate_limit` requests
      in 5 minutes, until its rate falls back under the limit. The ALB is the edge (no CloudFront or proxy
      in front of it), so the source IP WAF sees is the client's. This is a flood guard per address; the
      API's own per-key limits (DynamoDB counters, docs/operating/security.md) stay the fine-grained quota.
    - `AWSManagedRulesCommonRuleSet` (OWASP-style: bad inputs, XSS, LFI/RFI, SSRF to the metadata
      endpoint, requests without a User-Agent...), with one rule overridden to COUNT:
      `SizeRestrictions_BODY` blocks any body over 8 KB, but the API accepts JSON bodies up to 16 KiB
      (`RENDER_MAX_BODY_BYTES`; it answers 413 above that itself). So that rule only counts (its matches
      stay visible in the metrics and sampled requests). WAF on an ALB inspects only the first 8 KB of a
      body, so the other *_BODY rules see the first 8 KB of a larger body.
    """

    def __init__(
        self, scope: Construct, id: str, *, load_balancer: elbv2.IApplicationLoadBalancer, stage: str, rate_limit: int
    ):
        super().__init__(scope, id)
        prefix = f"render-{stage}"
        self.web_acl = wafv2.CfnWebACL(
            self,
            "Acl",
            scope="REGIONAL",
            # (WAF refuses parentheses in a description)
            description=f"Render farm API {stage} - AWS common rule set, rate limit per client IP",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility(f"{prefix}-waf"),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="RatePerIp",
                    priority=0,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            limit=rate_limit, aggregate_key_type="IP", evaluation_window_sec=RATE_WINDOW_SECONDS
                        )
                    ),
                    visibility_config=_visibility(f"{prefix}-rate-per-ip"),
                ),
                wafv2.CfnWebACL.RuleProperty(
                    name="AWSManagedRulesCommonRuleSet",
                    priority=1,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS",
                            name="AWSManagedRulesCommonRuleSet",
                            # 8 KB body limit < the API's 16 KiB: count, don't block (see the class docstring).
                            rule_action_overrides=[
                                wafv2.CfnWebACL.RuleActionOverrideProperty(
                                    name="SizeRestrictions_BODY",
                                    action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={}),
                                )
                            ],
                        )
                    ),
                    visibility_config=_visibility(f"{prefix}-common-rule-set"),
                ),
            ],
        )
        wafv2.CfnWebACLAssociation(
            self, "Association", resource_arn=load_balancer.load_balancer_arn, web_acl_arn=self.web_acl.attr_arn
        )
