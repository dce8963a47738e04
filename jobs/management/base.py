"""The base of operator commands: AWS unreachable or refusing is one line on stderr and exit 1, not a traceback."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as EndpointUnreachable
from django.core.management.base import BaseCommand, CommandError

from jobs.devstack import envfile
from jobs.errors import ServiceUnavailable


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def aws_failure_line(exc: ServiceUnavailable | BotoCoreError | ClientError) -> str:
    """What failed, why (botocore's one-line reason, which names the endpoint), and whether a local stack is up."""
    if isinstance(exc, ServiceUnavailable):
        what = exc.message.removesuffix(" try again shortly.").removesuffix(";")
        reason = _root_cause(exc) if exc.__cause__ is not None else None
    else:
        what = "AWS refused the request" if isinstance(exc, ClientError) else "the AWS call failed"
        reason = exc
    line = f"{what} ({reason})" if reason is not None else what
    if isinstance(reason, NoCredentialsError):
        line += "; no local stack is running (`make run` starts one) and no AWS credentials are set"
    elif isinstance(reason, EndpointUnreachable) and envfile.read(envfile.env_path()) is None:
        line += "; no local stack is running (`make run` starts one)"
    return line + ". --traceback shows the details."


class OperatorCommand(BaseCommand):
    """A management command that reaches AWS; an outage or a refusal becomes a CommandError of one line."""

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except (ServiceUnavailable, BotoCoreError, ClientError) as exc:
            raise CommandError(aws_failure_line(exc)) from exc
