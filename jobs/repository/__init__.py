"""The AWS boundary for state: DynamoDB items <-> domain objects; lost conditions -> domain errors.

Services depend on the `JobRepository` protocol of jobs.ports (with its `chunks`, a `ChunkRepository`);
`DynamoJobRepository` implements it on the one table (docs/ARCHITECTURE.md), and `tests/fakes.py` has an
in-memory implementation for unit tests. The contract tests run against both.
"""

from __future__ import annotations

from jobs.repository.api_keys import DynamoApiKeyRepository
from jobs.repository.jobs import DynamoJobRepository

__all__ = ["DynamoApiKeyRepository", "DynamoJobRepository"]
