"""Validation of user-given names and ids. Pure: no I/O.

Each check raises `InvalidInput` with a message naming the bad value and the rule it broke,
before anything is read or written.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from backstop.core.errors import InvalidInput

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_TABLE = re.compile(r"^[\w\-$ ]{1,1024}$", re.UNICODE)
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[a-z][a-z0-9-]{1,62}$")
BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
_COMPONENT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def check_bucket(name: str) -> str:
    """Return `name` if it is a valid Cloud Storage bucket name, else raise InvalidInput."""
    if not isinstance(name, str) or not _BUCKET.match(name) or ".." in name or name.startswith("goog"):
        raise InvalidInput(
            f"malformed bucket name {name!r}: use 3-222 lowercase letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    if "." not in name and len(name) > 63:
        raise InvalidInput(f"malformed bucket name {name!r}: longer than 63 characters")
    return name


def check_dataset(name: str) -> str:
    """Return `name` if it is a valid BigQuery dataset id, else raise InvalidInput."""
    if not isinstance(name, str) or not _DATASET.match(name):
        raise InvalidInput(f"malformed dataset id {name!r}: use letters, digits and underscores only")
    return name


def check_table(name: str) -> str:
    """Return `name` if it is a valid BigQuery table id, else raise InvalidInput."""
    if not isinstance(name, str) or not _TABLE.match(name) or name.strip() != name:
        raise InvalidInput(f"malformed table id {name!r}: use letters, digits, '_', '-', '$' or spaces")
    return name


def check_backup_id(backup_id: str) -> str:
    """Return `backup_id` if it has the form 20261124T214600Z-1a2b3c, else raise InvalidInput."""
    if not isinstance(backup_id, str) or not BACKUP_ID.match(backup_id):
        raise InvalidInput(f"malformed backup id {backup_id!r}: expected the form 20261124T214600Z-1a2b3c")
    return backup_id


def check_source_name(name: str) -> str:
    """A source name as used in catalog paths (bucket, dataset, environment, cluster, config set)."""
    if not isinstance(name, str) or not _COMPONENT_NAME.match(name.lower()):
        raise InvalidInput(f"malformed source name {name!r}: use letters, digits, '.', '_' or '-'")
    return name


def check_percent(value: float, what: str = "percentage") -> float:
    """Return `value` if 0 <= value <= 100, else raise InvalidInput."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} {value!r} is not a number") from None
    if not 0.0 <= number <= 100.0 or number != number:
        raise InvalidInput(f"{what} {value!r} is out of range: give a number from 0 to 100")
    return number


def parse_time(value: str | datetime) -> datetime:
    """Parse an ISO-8601 time (a date alone means midnight UTC); naive times are taken as UTC."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                f"malformed time {value!r}: use ISO 8601, e.g. 2026-11-24 or 2026-11-24T21:00:00Z"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not datetime(2000, 1, 1, tzinfo=UTC) <= moment <= datetime(2200, 1, 1, tzinfo=UTC):
        raise InvalidInput(f"time {value!r} is out of range")
    return moment.astimezone(UTC)
