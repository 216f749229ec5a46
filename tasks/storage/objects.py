"""The backup bucket's objects: what `BackupStore` (tasks/storage/bucket.py) does with single objects.

`ObjectStore` creates and checks the bucket, writes, reads, stats and lists objects, deletes them
and places or releases temporary holds, converting `google.api_core` errors into Backstop errors
at the call site (tasks/storage/google_api.py). Deletes report objects kept by the bucket (a hold
or the retention policy) apart from failures (`kept_reason`, `DeleteOutcome`).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc

from backstop.core.errors import BackstopError, NotFound
from backstop.core.retention_lock import RetentionLock
from tasks.storage.google_api import (
    RETRY,
    TIMEOUT,
    Call,
    batch_groups,
    batched_calls,
    converted_errors,
    direct_calls,
    object_path,
)
from tasks.storage.parallel import parallel_map, prefetch_many


def kept_reason(exc: gexc.GoogleAPICallError) -> str | None:
    """'temporary hold' / 'event-based hold' / 'retention policy ...' when Cloud Storage refused a
    delete or replace because the bucket protects the object.

    The message says which protection (the API's wording); an unknown wording with the error
    reason `retentionPolicyNotMet` still counts as kept. A plain permission error is no protection.
    """
    text = str(getattr(exc, "message", exc))
    reasons = {str(e.get("reason")) for e in (getattr(exc, "errors", None) or []) if isinstance(e, dict)}
    if "Temporary hold" in text:
        return "temporary hold"
    if "Event-Based hold" in text:
        return "event-based hold"
    if "retention policy" in text or "object retention" in text:
        until = text.rsplit(" until ", 1)[-1] if " until " in text else ""
        return "bucket retention policy" + (f" until {until}" if until else "")
    if "retentionPolicyNotMet" in reasons:
        return "object hold or retention policy"
    return None


@dataclass
class DeleteOutcome:
    """What a batch delete did: deleted keys, keys the bucket kept (with why), failures (with why)."""

    deleted: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, results: Iterable[tuple[str, str, str]]) -> DeleteOutcome:
        """The outcome of (key, "deleted" | "kept" | "failed", why) results (`ObjectStore.delete_one`)."""
        outcome = cls()
        for key, what, why in results:
            if what == "deleted":
                outcome.deleted.append(key)
            elif what == "kept":
                outcome.kept[key] = why
            else:
                outcome.failed[key] = why
        return outcome


class ObjectStore:
    """The objects of one backup bucket (primary or secondary)."""

    def __init__(
        self,
        client: Any,
        bucket_name: str,
        kms_key_name: str | None = None,
        lock: RetentionLock | None = None,
    ) -> None:
        self.client = client
        self.bucket_name = bucket_name
        self.kms_key_name = kms_key_name
        # Object retention on what backups reference (tasks/storage/object_lock.py); None: off.
        self.lock = lock
        self.retention_enabled: bool | None = None  # whether the bucket has it, once asked
        self.checked: Any = None  # the bucket's metadata as `check_bucket` found it
        self.bucket = client.bucket(bucket_name)

    def where(self, key: str = "") -> str:
        return f"gs://{self.bucket_name}/{key}"

    def ensure_bucket(self, location: str | None = None) -> None:
        """Create the backup bucket if it does not exist: uniform access, public access prevented,
        the store's KMS key as its default, object retention enabled when the store locks objects
        (it can only be enabled at creation); `backstop harden` adds the retention policy."""
        with converted_errors(f"backup bucket {self.where()}"):
            if self.client.lookup_bucket(self.bucket_name, timeout=TIMEOUT) is None:
                bucket = self.client.bucket(self.bucket_name)
                bucket.iam_configuration.uniform_bucket_level_access_enabled = True
                bucket.iam_configuration.public_access_prevention = "enforced"
                if self.kms_key_name:
                    bucket.default_kms_key_name = self.kms_key_name
                self.client.create_bucket(
                    bucket, location=location, timeout=TIMEOUT, enable_object_retention=self.lock is not None
                )

    def check_bucket(self) -> None:
        """Raise NotFound unless the backup bucket exists (its metadata kept in `checked`)."""
        with converted_errors(f"backup bucket {self.where()}"):
            self.checked = self.client.lookup_bucket(self.bucket_name, timeout=TIMEOUT, retry=RETRY)
            if self.checked is None:
                raise NotFound(f"backup bucket {self.where()} does not exist")

    def blob(self, key: str) -> Any:
        return self.bucket.blob(key, kms_key_name=self.kms_key_name)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        retain_until: datetime | None = None,
    ) -> Any:
        """Upload `data` and verify the stored crc32c; returns the blob. `retain_until`: created
        with that object retention (in the store's lock mode)."""
        blob = self.blob(key)
        if retain_until is not None and self.lock is not None:
            blob.retention.mode = self.lock.mode
            blob.retention.retain_until_time = retain_until
        with converted_errors(f"writing {self.where(key)}"):
            blob.upload_from_string(
                data, content_type=content_type, timeout=TIMEOUT, retry=RETRY, checksum="crc32c"
            )
        return blob

    def put_file(self, key: str, path: str, content_type: str = "application/octet-stream") -> Any:
        blob = self.blob(key)
        with converted_errors(f"writing {self.where(key)}"):
            blob.upload_from_filename(
                path, content_type=content_type, timeout=TIMEOUT * 10, checksum="crc32c"
            )
        return blob

    def get_bytes(self, key: str) -> bytes:
        direct = direct_calls(self.client)
        with converted_errors(f"reading {self.where(key)}"):
            if direct is not None:
                return RETRY(direct.get_media)(self.bucket_name, key, TIMEOUT)
            return self.bucket.blob(key).download_as_bytes(timeout=TIMEOUT, retry=RETRY, checksum=None)

    def get_file(self, key: str, path: str) -> None:
        with converted_errors(f"reading {self.where(key)}"):
            self.bucket.blob(key).download_to_filename(path, timeout=TIMEOUT * 10, checksum=None)

    def stat(self, key: str) -> Any | None:
        """The blob with its size / crc32c / md5, or None if absent."""
        with converted_errors(f"reading {self.where(key)}"):
            return self.bucket.get_blob(key, timeout=TIMEOUT, retry=RETRY)

    def list(self, prefix: str) -> dict[str, Any]:
        """Every object under `prefix`, by name (one paged listing)."""
        with converted_errors(f"listing {self.where(prefix)}"):
            return {
                b.name: b
                for b in self.client.list_blobs(self.bucket, prefix=prefix, timeout=TIMEOUT, retry=RETRY)
            }

    def iter_list(self, prefix: str, fields: str | None = None) -> Iterator[Any]:
        """Every object under `prefix`, page by page, in name order (never held whole); `fields`:
        only those properties of each (a partial response: smaller pages)."""
        for page in self._pages(prefix, fields):
            yield from page

    def iter_list_shards(self, shards: Sequence[str], fields: str | None = None) -> Iterator[Any]:
        """Every object under each of `shards` (prefixes that do not overlap), the shards listed at
        once on threads of their own and their pages merged as they come (objects in no order); a
        few pages in memory at a time. A listing's pages come one after another: a prefix of
        millions of objects is thousands of round trips in a row, shards divide them."""
        for page in prefetch_many([self._pages(shard, fields) for shard in shards], depth=2 * len(shards)):
            yield from page

    def _pages(self, prefix: str, fields: str | None) -> Iterator[Iterable[Any]]:
        """The pages of a listing of `prefix`, as they come (each makes its objects as it is read)."""
        with converted_errors(f"listing {self.where(prefix)}"):
            yield from self.client.list_blobs(
                self.bucket, prefix=prefix, fields=fields, timeout=TIMEOUT, retry=RETRY
            ).pages

    def list_prefixes(self, prefix: str) -> builtins.list[str]:
        """The sub-folders directly under `prefix` (a delimiter listing: no object is returned)."""
        with converted_errors(f"listing {self.where(prefix)}"):
            pages = self.client.list_blobs(
                self.bucket, prefix=prefix, delimiter="/", timeout=TIMEOUT, retry=RETRY
            )
            for _ in pages:  # the prefixes are known once the pages are read
                pass
            return sorted(pages.prefixes)

    def delete_one(self, key: str, retry: Any = RETRY) -> tuple[str, str, str]:
        """Delete `key`: (key, "deleted" | "kept" | "failed", why). Absent counts as deleted; held or
        retained as kept by the bucket."""
        try:
            with converted_errors(f"deleting {self.where(key)}"):
                try:
                    self.bucket.blob(key).delete(timeout=TIMEOUT, retry=retry)
                except gexc.Forbidden as exc:
                    reason = kept_reason(exc)
                    if reason is None:
                        raise
                    return key, "kept", reason
        except NotFound:
            return key, "deleted", ""
        except BackstopError as exc:
            return key, "failed", str(exc)
        return key, "deleted", ""

    def delete_many(self, keys: Sequence[str], retry: Any = RETRY) -> builtins.list[tuple[str, str, str]]:
        """Delete up to BATCH_CALLS `keys` in one batch request, each as `delete_one` does (each
        answered, and refused, as if sent alone); a delete the batch did not settle (an error other
        than not found or kept by the bucket, no batch endpoint) is made alone by `delete_one`.
        `retry`: the batch request's and those deletes' (a bucket's write ramp's slows it down)."""
        calls: builtins.list[Call] = [
            ("DELETE", object_path(self.bucket_name, key), {}, None) for key in keys
        ]
        found = batched_calls(self.client, calls, retry) if len(keys) > 1 else None
        answers: builtins.list[Any] = [*found] if found is not None else [None] * len(keys)
        results = []
        for key, answer in zip(keys, answers, strict=True):
            reason = kept_reason(answer) if isinstance(answer, gexc.Forbidden) else None
            if isinstance(answer, dict | gexc.NotFound):
                results.append((key, "deleted", ""))
            elif reason is not None:
                results.append((key, "kept", reason))
            else:
                results.append(self.delete_one(key, retry))
        return results

    def delete_objects(self, keys: builtins.list[str], workers: int = 16) -> DeleteOutcome:
        """Delete `keys` (up to BATCH_CALLS a request). Absent keys count as deleted; held or retained
        ones as kept by the bucket."""
        groups = batch_groups(keys, workers)
        return DeleteOutcome.of(r for done in parallel_map(self.delete_many, groups, workers) for r in done)

    def delete(self, keys: builtins.list[str], workers: int = 16) -> builtins.list[str]:
        """Delete `keys`; return the ones that could not be deleted (with the reason)."""
        outcome = self.delete_objects(keys, workers)
        return [*outcome.failed.values()] + [
            f"{self.where(key)}: kept by the bucket ({why})" for key, why in outcome.kept.items()
        ]

    def set_hold(self, keys: builtins.list[str], held: bool) -> builtins.list[str]:
        """Place (or release) a temporary hold on `keys`; returns problems, one per key that failed."""

        def one(key: str) -> str | None:
            blob = self.bucket.blob(key)
            blob.temporary_hold = held
            try:
                with converted_errors(f"{'holding' if held else 'releasing'} {self.where(key)}"):
                    blob.patch(timeout=TIMEOUT, retry=RETRY)
            except BackstopError as exc:
                return str(exc)
            return None

        return [p for p in parallel_map(one, keys) if p]
