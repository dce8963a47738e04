"""A Django session engine on DynamoDB (SESSION_ENGINE = "jobs.api.sessions"), for the browsable API's login.

Signed-cookie sessions cannot be ended by the server: a copied cookie would keep working after logout
until it expired. Here the session lives in the table (jobs/repository/sessions.py) and its cookie is
only a random key, so logout, or the revocation of the key it logged in with, deletes it for good.
Only browser logins create sessions; API calls with a bearer key never touch one.
"""

from __future__ import annotations

import hashlib
import re

from django.conf import settings
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, CreateError, SessionBase, UpdateError
from django.utils.crypto import get_random_string

from jobs.adapters import aws
from jobs.domain import utcnow
from jobs.repository.sessions import DynamoSessionRepository

KEY_LENGTH = 32
_KEY = re.compile(rf"[{re.escape(VALID_KEY_CHARS)}]{{{KEY_LENGTH}}}")


def _repository() -> DynamoSessionRepository:
    return DynamoSessionRepository(client=aws.client("dynamodb"), table_name=settings.RENDER_TABLE_NAME)


def session_hash(session_key: str) -> str:
    return hashlib.sha256(session_key.encode()).hexdigest()


class SessionStore(SessionBase):
    def _validate_session_key(self, key) -> bool:
        # Only what we could have issued: a junk cookie costs no read.
        return bool(key) and _KEY.fullmatch(key) is not None

    def _get_new_session_key(self) -> str:
        # No exists() read first: the conditional create refuses a taken key, and create() picks another.
        return get_random_string(KEY_LENGTH, VALID_KEY_CHARS)

    def load(self) -> dict:
        data = _repository().get(session_hash(self.session_key), now=utcnow()) if self.session_key else None
        if data is None:
            self._session_key = None
            return {}
        return self.decode(data)

    def exists(self, session_key) -> bool:
        return self._validate_session_key(session_key) and (
            _repository().get(session_hash(session_key), now=utcnow()) is not None
        )

    def create(self) -> None:
        for _ in range(10):
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise RuntimeError("Could not create a session with a fresh key.")

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        data = self.encode(self._get_session(no_load=must_create))
        key, expires = session_hash(self.session_key), self.get_expiry_date()
        if must_create:
            if not _repository().create(key, data, expires_at=expires):
                raise CreateError
        elif not _repository().update(key, data, expires_at=expires, now=utcnow()):
            raise UpdateError  # logged out (or expired) meanwhile: do not bring it back

    def delete(self, session_key=None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        _repository().delete(session_hash(session_key))

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: DynamoDB's TTL deletes expired sessions, and reads ignore them until it does."""
