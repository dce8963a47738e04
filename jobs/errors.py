"""The one error hierarchy: every domain error carries an HTTP status, a code and a message."""

from typing import Any


class DomainError(Exception):
    """Base of all errors the API turns into `{"error": {"code", "message", "details"}}`."""

    status_code = 400
    code = "bad_request"
    default_message = "Bad request."
    retry_after: int | None = None  # seconds, sent as Retry-After: the request may succeed if sent again then

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None):
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)


class JobNotFound(DomainError):
    status_code = 404
    code = "not_found"
    default_message = "No such job."


class JobAlreadyExists(DomainError):
    status_code = 409
    code = "already_exists"
    default_message = "A job with this id already exists."


class JobStateConflict(DomainError):
    """A conditional write lost: the job is not in the state (or attempt, or lease) the caller assumed."""

    status_code = 409
    code = "state_conflict"
    default_message = "The job's state does not allow this."


class StaleWrite(JobStateConflict):
    """A conditional write lost against the item as it now stands: it is `status` at `attempt`.

    Callers that may decide again (re-read and retry, or see that the work is done) catch this type; other
    conflicts (a request that the job's state does not allow at all) are plain JobStateConflicts.
    `current` holds what the store returned of the item (the repository reads it for a lease takeover).
    """

    def __init__(self, status: str | None, attempt: int, *, current: dict[str, Any] | None = None):
        super().__init__(f"It is {status} (attempt {attempt}).", details={"status": status, "attempt": attempt})
        self.status = status
        self.attempt = attempt
        self.current = current or {}


class InvalidCursor(DomainError):
    status_code = 400
    code = "invalid_cursor"
    default_message = "The cursor is not valid; start again without one."


class ServiceUnavailable(DomainError):
    """A service the farm depends on did not answer (an outage, throttling, no route): the farm's fault.

    `component` is the farm's own name for it (`job state storage`, `result storage`, ...), the words a
    customer is shown when a job fails on it; `doing` says what the farm was doing then, where it knows.
    """

    status_code = 503
    code = "service_unavailable"
    default_message = "A backing service is unreachable; try again shortly."

    def __init__(
        self,
        message: str | None = None,
        *,
        component: str = "a service of the farm",
        doing: str | None = None,
        details: dict[str, Any] | None = None,
    ):
        super().__init__(message, details=details)
        self.component = component
        self.doing = doing

    def for_customers(self) -> str:
        """E.g. `could not store frame 3: result storage unavailable` (never an AWS name or host)."""
        what = f"{self.component} unavailable"
        return f"{self.doing}: {what}" if self.doing else what


class LeaseLost(JobStateConflict):
    """The worker no longer holds the chunk: its lease lapsed and another worker took it over."""

    default_message = "The lease on this work was lost."


class JobNotRunning(JobStateConflict):
    """The job left PROCESSING (cancelled, failed, retried) while a chunk of it was rendering."""

    def __init__(self, status: str, message: str | None = None):
        super().__init__(message or f"Job is {status}.", details={"status": status})
        self.status = status


class IdempotencyKeyReused(DomainError):
    status_code = 422
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was used with a different request body."


class RenderError(Exception):
    """A frame could not be rendered. Its message is shown to the customer (keep internals out of it); the
    chunk is retried with backoff, then fails the job."""


class SceneRefused(RenderError):
    """The scene file does something the farm does not allow (it could run code or reach files outside its
    sandbox). Rendering it again cannot help, so the job fails at once; the message names the feature."""


class EncodeError(RenderError):
    """A step's video could not be made (ffmpeg failed, timed out, or wrote other than asked). Its message is
    shown to the customer; the step is retried with backoff, then fails the job."""


class EncodeRefused(EncodeError):
    """A video that trying again would not make: its frames are more than an encode may take, or it ran past
    the farm's time limit. The step (and its job) fails at once, with the message."""


class StepsRefused(DomainError):
    """A job's steps cannot run on its frames (found once a scene file's own settings are known): the same
    answer as a field the serializer refuses, `invalid` with the message under `steps`."""

    status_code = 400
    code = "invalid"
    default_message = "These steps cannot run on this job's frames."

    def __init__(self, message: str):
        super().__init__(f"steps: {message}", details={"steps": [message]})


class PriorityNotAllowed(DomainError):
    status_code = 403
    code = "priority_not_allowed"
    default_message = "This API key may not submit priority=high; ask an operator for a key with the high scope."


class OwnerLimitReached(DomainError):
    """The owner's frames waiting or rendering would pass the per-owner limit (fairness between owners)."""

    status_code = 429
    code = "owner_limit_reached"
    default_message = "Too many frames waiting or rendering for this owner; wait for some to finish."


class BudgetExceeded(DomainError):
    """The owner's spend this month has reached its budget (per-owner budgets, set by an operator)."""

    status_code = 429
    code = "budget_exceeded"
    default_message = "This owner's budget for the month is spent."


class IdempotencyTaken(Exception):
    """The idempotency record exists (and has not expired): the caller looks up the original job."""


class OperatorOnly(DomainError):
    status_code = 403
    code = "operator_only"
    default_message = "This endpoint is for operators; it needs an API key made with `create_api_key --operator`."


class AssetTooLarge(DomainError):
    status_code = 413
    code = "asset_too_large"
    default_message = "The scene file is larger than this farm accepts."


class AssetNotFound(DomainError):
    status_code = 404
    code = "not_found"
    default_message = "No such asset."


class AssetConflict(DomainError):
    """The declared size disagrees with the file already stored under this SHA-256."""

    status_code = 409
    code = "asset_conflict"
    default_message = "A file with this SHA-256 is already stored with another size; check the hash and size."


class SceneFileMissing(DomainError):
    status_code = 422
    code = "scene_file_missing"
    default_message = "The scene file has not been uploaded; POST /api/assets and PUT it first."


class SceneFileMismatch(DomainError):
    status_code = 422
    code = "scene_file_mismatch"
    default_message = "The uploaded scene file does not match its declared size or SHA-256; upload it again."


class SceneFileInspecting(DomainError):
    """The job leaves its frame range to the scene file, whose settings a worker is still reading."""

    status_code = 409
    code = "scene_file_inspecting"
    default_message = (
        "The farm is still reading the scene file's settings (it takes a few seconds once uploaded); send the "
        "job again shortly, or give its frames (frame_start and frame_end, or frames)."
    )
    retry_after = 3


class SceneFileUnreadable(DomainError):
    status_code = 422
    code = "scene_file_unreadable"
    default_message = "Blender could not read the scene file."


class SceneFileRefused(DomainError):
    """What the farm's Blender found in the file and will not render (the message names it and the fix)."""

    status_code = 422
    code = "scene_refused"
    default_message = "The scene file uses something the farm does not allow."


class SceneFilesMissing(DomainError):
    """The file reads files from outside itself and the job asks to fail on that (the default)."""

    status_code = 422
    code = "scene_files_missing"
    default_message = "The scene file reads files that are not packed into it."


class LogNotFound(DomainError):
    status_code = 404
    code = "not_found"
    default_message = "No render log for this chunk (not started yet, or its renderer writes none)."


class WebhookSecretMissing(DomainError):
    """A job with a callback_url from an owner who has no webhook secret: nothing could sign its deliveries."""

    status_code = 409
    code = "webhook_secret_missing"
    default_message = (
        "A callback_url needs a webhook secret to sign deliveries: create one with POST /api/webhook-secret "
        "(or `manage.py create_webhook_secret --owner NAME`), then submit again."
    )
