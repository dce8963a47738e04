"""AWS Secrets Manager, for handing a new API key to a deployment without printing it.

The secret's value is the key alone (what a client puts after `Bearer`), so a consumer reads it as is.
Writing to a name that exists adds a new version (the previous one stays as AWSPREVIOUS), which is how
a client's key is rotated in place.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from jobs.adapters.aws import error_code, unavailable_as_503


class SecretsManagerStore:
    def __init__(self, *, client):
        self._client = client

    def put(self, name: str, value: str, *, tags: dict[str, str], description: str = "") -> str:
        """Create the secret, or put a new version of it; tag it either way. Returns its ARN."""
        tag_list = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
        try:
            with unavailable_as_503("Secrets Manager"):
                resp = self._client.create_secret(Name=name, SecretString=value, Tags=tag_list, Description=description)
            return resp["ARN"]
        except ClientError as exc:
            if error_code(exc) != "ResourceExistsException":
                raise
        with unavailable_as_503("Secrets Manager"):
            resp = self._client.put_secret_value(SecretId=name, SecretString=value)
            self._client.tag_resource(SecretId=name, Tags=tag_list)
        return resp["ARN"]
