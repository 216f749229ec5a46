"""One error hierarchy for Backstop.

Every module converts the errors of the SDK it calls into one of these at the call site
(`raise NotFound(...) from exc`), so flows, the CLI and the tests see one vocabulary. The
message always says what failed and where; the CLI prints it on one line with no traceback.
"""

from __future__ import annotations


class BackstopError(Exception):
    """Root of every error Backstop raises on purpose."""


class InvalidInput(BackstopError):
    """A name, id, percentage or time given by the user is malformed or out of range."""


class ConfigError(BackstopError):
    """A block or setting is missing or malformed."""


class NotFound(BackstopError):
    """A bucket, dataset, table, object, environment or backup does not exist."""


class PermissionDenied(BackstopError):
    """The credentials in use may not do this."""


class Conflict(BackstopError):
    """The operation would overwrite existing data and overwrite was not asked for."""


class ValidationFailed(BackstopError):
    """A backup does not match its manifest, or the manifest itself is damaged."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class Unavailable(BackstopError):
    """A service did not answer (an emulator died, a network failure). Transient."""


class ObjectiveBreached(BackstopError):
    """A recovery-point or recovery-time objective is not met."""


# What a restore refuses for its input: a malformed or unknown name, a backup of another source, a
# restore that would overwrite without being asked to. A user's mistake, not an incident: such a
# restore ends "refused" (no alert, no failure counted).
REFUSALS: tuple[type[BackstopError], ...] = (InvalidInput, NotFound, Conflict)
