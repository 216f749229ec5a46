"""Object Retention Lock as the Cloud Storage JSON API has it, for localdev/servers/gcs_policy_server.py.

- A bucket takes object retention only when it has it enabled: `objectRetention: {mode: "Enabled"}`,
  set by `buckets.insert?enableObjectRetention=true` (or a patch that enables it; it is never turned
  off). Elsewhere a `retention` on an object is refused (400).
- An object carries `retention: {mode: "Unlocked" | "Locked", retainUntilTime}` from its insert or a
  patch; until then it cannot be deleted or replaced (403, the API's message), whatever the caller.
- Locked: the time can only be lengthened; the mode cannot change and the retention cannot be removed.
- Unlocked: lengthening is allowed; shortening it, removing it or locking it needs
  `overrideUnlockedRetention=true` (and the permission `storage.objects.overrideUnlockedRetention`).
- Setting a retention needs `storage.objects.setRetention` (on insert and on patch).
- `retentionExpirationTime` is the later of the bucket retention policy's end and `retainUntilTime`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

MODES = ("Unlocked", "Locked")
SET_RETENTION = "storage.objects.setRetention"
OVERRIDE = "storage.objects.overrideUnlockedRetention"


class RetentionRefused(Exception):
    """The change would weaken a retention the API protects (HTTP 403)."""


class RetentionInvalid(Exception):
    """The retention is malformed or the bucket has no object retention (HTTP 400)."""


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as the client sends it ("...Z", with or without fractions)."""
    found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def enabled(bucket: dict[str, Any]) -> bool:
    return (bucket.get("objectRetention") or {}).get("mode") == "Enabled"


def normalized(wanted: Any) -> dict[str, str] | None:
    """The retention to store ({mode, retainUntilTime}), or None for "no retention"."""
    if (
        not wanted
        or not isinstance(wanted, dict)
        or not (wanted.get("mode") or wanted.get("retainUntilTime"))
    ):
        return None
    mode, until = wanted.get("mode"), wanted.get("retainUntilTime")
    if mode not in MODES:
        raise RetentionInvalid(f"Invalid retention mode {mode!r}: must be one of {', '.join(MODES)}.")
    if not until:
        raise RetentionInvalid("Object retention needs a retainUntilTime.")
    try:
        parse_time(str(until))
    except ValueError as exc:
        raise RetentionInvalid(f"Invalid retainUntilTime {until!r}.") from exc
    return {"mode": str(mode), "retainUntilTime": str(until)}


def for_insert(bucket: dict[str, Any], wanted: Any) -> dict[str, str] | None:
    """The retention a new object gets (checked against the bucket)."""
    found = normalized(wanted)
    if found is not None and not enabled(bucket):
        raise RetentionInvalid(f"Object retention is not enabled on bucket '{bucket.get('name')}'.")
    return found


def check_change(name: str, current: Any, wanted: Any, override: bool) -> dict[str, str] | None:
    """The retention after a patch from `current` to `wanted`; refuses what the API refuses."""
    new = normalized(wanted)
    old = normalized(current)
    if old is None:
        return new
    old_until = parse_time(old["retainUntilTime"])
    shorter = new is None or parse_time(new["retainUntilTime"]) < old_until
    if old["mode"] == "Locked":
        if new is None or new["mode"] != "Locked" or shorter:
            raise RetentionRefused(
                f"Object '{name}' has a Locked retention until {old['retainUntilTime']}: it can only be "
                "extended, never shortened, unlocked or removed."
            )
        return new
    if (shorter or (new is not None and new["mode"] != old["mode"])) and not override:
        raise RetentionRefused(
            f"Object '{name}' has an Unlocked retention until {old['retainUntilTime']}: shortening, removing "
            "or locking it needs overrideUnlockedRetention=true."
        )
    return new


def until(obj: dict[str, Any]) -> datetime | None:
    """When the object's own retention ends (None: it has none)."""
    found = obj.get("retention") or {}
    return parse_time(found["retainUntilTime"]) if found.get("retainUntilTime") else None
