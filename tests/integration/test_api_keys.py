"""API keys as operators handle them (create, list, revoke) and as the auth layer sees them (scopes, cache)."""

import json
import uuid
from io import StringIO

import pytest
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from jobs import wiring
from jobs.adapters import aws
from jobs.api.auth import ApiKeyUser, BearerApiKeyAuthentication, key_cache
from jobs.domain import utcnow
from jobs.services import api_key_create, hash_api_key
from jobs.services.api_keys import api_key_id


def owner() -> str:
    return f"o-{uuid.uuid4().hex[:10]}"


def manage(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def authenticate(key: str) -> ApiKeyUser:
    request = RequestFactory().get("/api/jobs", HTTP_AUTHORIZATION=f"Bearer {key}")
    user, _ = BearerApiKeyAuthentication().authenticate(request)
    return user


class NoLookups:
    def __getattr__(self, name):
        raise AssertionError(f"the key repository was asked: {name}")


def test_create_api_key_grants_scopes_and_auth_exposes_them(emulator):
    name = owner()
    plain = manage("create_api_key", "--owner", name).strip()
    high = manage("create_api_key", "--owner", name, "--allow-high").strip()
    both = manage("create_api_key", "--owner", name, "--allow-high", "--operator").strip()
    assert [authenticate(k).scopes for k in (plain, high, both)] == [
        frozenset(),
        frozenset({"high"}),
        frozenset({"high", "operator"}),
    ]
    user = authenticate(high)
    assert user.owner == name and user.key_id == hash_api_key(high)[:16] and str(user) == name


def test_the_key_item_stores_its_id_and_scopes(emulator):
    key = api_key_create(repo=wiring.api_key_repository(), owner=owner(), now=utcnow(), scopes=frozenset({"high"}))
    record = wiring.api_key_repository().record_for(hash_api_key(key))
    assert record.key_id == api_key_id(key) and len(record.key_id) == 16 and record.scopes == {"high"}
    with pytest.raises(ValueError, match="unknown scopes"):
        api_key_create(repo=wiring.api_key_repository(), owner="x", now=utcnow(), scopes=frozenset({"root"}))


def test_the_key_cache_holds_whole_records_in_djangos_cache(emulator, monkeypatch):
    key_cache.clear()
    key = api_key_create(repo=wiring.api_key_repository(), owner=owner(), now=utcnow(), scopes=frozenset({"high"}))
    unknown = "rk_" + uuid.uuid4().hex + "A" * 11
    first = authenticate(key)
    with pytest.raises(Exception, match="Unknown or revoked"):
        authenticate(unknown)
    assert caches["api_keys"].get(hash_api_key(key)).scopes == {"high"}
    monkeypatch.setattr(wiring, "api_key_repository", NoLookups)  # both answers now come from the cache
    assert authenticate(key) == first
    with pytest.raises(Exception, match="Unknown or revoked"):
        authenticate(unknown)


def test_revoking_twice_says_so(emulator):
    key = api_key_create(repo=wiring.api_key_repository(), owner=owner(), now=utcnow())
    assert "revoked 1 key(s)" in manage("revoke_api_key", "--key", key)
    again = manage("revoke_api_key", "--key", key)
    assert "already revoked" in again and "revoked 1" not in again
    with pytest.raises(CommandError, match="No such key"):
        manage("revoke_api_key", "--key", "rk_" + "Z" * 43)


def test_revoking_an_owner_counts_only_new_revocations(emulator):
    name, repo = owner(), wiring.api_key_repository()
    first = api_key_create(repo=repo, owner=name, now=utcnow())
    api_key_create(repo=repo, owner=name, now=utcnow())
    manage("revoke_api_key", "--key", first)
    assert "revoked 1 key(s) (1 already were)" in manage("revoke_api_key", "--owner", name)
    assert "already revoked" in manage("revoke_api_key", "--owner", name)


def test_revoke_by_key_id(emulator):
    key = api_key_create(repo=wiring.api_key_repository(), owner=owner(), now=utcnow())
    assert "revoked 1 key(s)" in manage("revoke_api_key", "--key-id", api_key_id(key))
    assert wiring.api_key_repository().record_for(hash_api_key(key)).revoked_at is not None
    with pytest.raises(CommandError, match="hex digits"):
        manage("revoke_api_key", "--key-id", "nothex")
    with pytest.raises(CommandError, match="No key has id"):
        manage("revoke_api_key", "--key-id", "0" * 16)


def test_list_api_keys_as_a_table_and_as_json(emulator):
    name, repo = owner(), wiring.api_key_repository()
    first = api_key_create(repo=repo, owner=name, now=utcnow(), scopes=frozenset({"high", "operator"}))
    second = api_key_create(repo=repo, owner=name, now=utcnow())
    repo.revoke(hash_api_key(second), now=utcnow())
    table = manage("list_api_keys", "--owner", name).splitlines()
    assert table[0].split() == ["OWNER", "KEY", "ID", "CREATED", "REVOKED", "SCOPES"]
    rows = [line.split() for line in table[1:]]
    assert [(r[0], r[1], r[4]) for r in rows] == [
        (name, api_key_id(first), "high,operator"),
        (name, api_key_id(second), "-"),
    ]
    assert rows[0][3] == "-" and rows[1][3].endswith("Z")
    lines = [json.loads(line) for line in manage("list_api_keys", "--owner", name, "--json").splitlines()]
    assert [(x["key_id"], x["scopes"], x["revoked_at"] is None) for x in lines] == [
        (api_key_id(first), ["high", "operator"], True),
        (api_key_id(second), [], False),
    ]
    everyone = [json.loads(line) for line in manage("list_api_keys", "--json").splitlines()]
    assert {api_key_id(first), api_key_id(second)} <= {x["key_id"] for x in everyone}
    assert first not in manage("list_api_keys") and hash_api_key(first) not in manage("list_api_keys")


def test_listing_all_keys_is_a_query_not_a_scan(emulator):
    emulator.reset_emulator_counts()
    manage("list_api_keys")
    actions = {(c["service"], c["action"]) for c in emulator.emulator_counts() if c["who"] == "system"}
    assert ("dynamodb", "Query") in actions and ("dynamodb", "Scan") not in actions


def test_reindex_gives_older_keys_an_id_and_a_place_in_the_listing(emulator):
    from django.conf import settings

    name, legacy_hash = owner(), uuid.uuid4().hex * 2
    aws.client("dynamodb").put_item(  # a key as the previous version stored it
        TableName=settings.RENDER_TABLE_NAME,
        Item={
            "pk": {"S": f"APIKEY#{legacy_hash}"},
            "sk": {"S": "APIKEY"},
            "owner": {"S": name},
            "created_at": {"S": "2026-01-01T00:00:00.000000+00:00"},
            "gsi1pk": {"S": f"APIKEYS#{name}"},
            "gsi1sk": {"S": f"2026-01-01T00:00:00.000000+00:00#{legacy_hash}"},
        },
    )
    assert legacy_hash[:16] not in manage("list_api_keys")
    assert legacy_hash[:16] in manage("list_api_keys", "--owner", name)  # an owner's keys: always listed
    assert legacy_hash[:16] in manage("list_api_keys", "--reindex")
    assert "revoked 1 key(s)" in manage("revoke_api_key", "--key-id", legacy_hash[:16])


def test_create_api_key_into_secrets_manager_prints_no_key(emulator):
    name, secret = owner(), f"render/test/{uuid.uuid4().hex[:8]}"
    out = manage("create_api_key", "--owner", name, "--allow-high", "--secret-name", secret)
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("secret arn:aws:secretsmanager:") and secret in lines[0]
    assert "rk_" not in out
    sm = aws.client("secretsmanager")
    key = sm.get_secret_value(SecretId=secret)["SecretString"]
    assert lines[1] == f"key id {api_key_id(key)}"
    assert authenticate(key).owner == name and authenticate(key).scopes == {"high"}
    tags = {t["Key"]: t["Value"] for t in sm.describe_secret(SecretId=secret)["Tags"]}
    assert tags == {"owner": name, "key-id": api_key_id(key)}

    # The same name again: a new version holding a new key; the old key stays valid until revoked.
    manage("create_api_key", "--owner", name, "--secret-name", secret)
    newer = sm.get_secret_value(SecretId=secret)["SecretString"]
    assert newer != key and newer.startswith("rk_")
    assert sm.get_secret_value(SecretId=secret, VersionStage="AWSPREVIOUS")["SecretString"] == key
    assert authenticate(newer).owner == name


def test_a_failed_secret_write_revokes_the_new_key(emulator, monkeypatch):
    from jobs.repository import secrets

    def refuse(self, name, value, **kwargs):
        refuse.key = value
        raise secrets.ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "CreateSecret")

    monkeypatch.setattr(secrets.SecretsManagerStore, "put", refuse)
    with pytest.raises(CommandError, match="the new key was revoked"):
        manage("create_api_key", "--owner", owner(), "--secret-name", "render/denied")
    assert not wiring.api_key_repository().record_for(hash_api_key(refuse.key)).active
