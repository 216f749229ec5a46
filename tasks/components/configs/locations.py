"""Where configuration files come from and go to: local directories and gs://bucket/prefix.

Reading a source (`collect_local`, `collect_gcs`) selects files by the source's patterns, leaves
out secrets (unless `include_secrets` names them), notes syntax warnings and adds each file to the
archive once (one read gives the bytes, the sha256 and the syntax check).

Restoring (`Location.apply`) plans first (created / changed / unchanged per file, with a unified
diff for small text files on a dry run) and writes only when the whole plan is allowed: a file that
exists with other content is never replaced unless `overwrite` is given, and then nothing at all is
written.

A local target never writes outside its root: every path is checked for `..` and absolute names,
and the real path of the nearest existing parent must lie inside the real path of the root, so a
symbolic link inside the target cannot redirect a write elsewhere. Files are written to a temporary
name in the same directory and renamed into place (an existing link is replaced, not followed).
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backstop.core.archive import (
    HEAD_BYTES,
    ArchiveWriter,
    FileRecord,
    check_member_name,
    is_selected,
    matches,
    needs_whole_file,
    secret_reason,
    syntax_problem,
    text_diff,
)
from backstop.core.errors import InvalidInput, NotFound, ValidationFailed
from backstop.core.names import check_bucket
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors
from tasks.storage.parallel import parallel_map

if TYPE_CHECKING:
    from blocks.components import ConfigSource

READ_WHOLE_LIMIT = 8 << 20  # files up to this size are read once into memory (hash, tar, syntax)

log = logging.getLogger("backstop.configs")


@dataclass
class Collected:
    """What reading a source into an archive found."""

    files: list[FileRecord] = field(default_factory=list)
    skipped_secrets: list[dict[str, str]] = field(default_factory=list)
    included_secrets: list[str] = field(default_factory=list)
    skipped_other: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _take(source: ConfigSource, rel: str, head: bytes, whole: bytes | None, found: Collected) -> bool:
    """Whether to archive `rel`; records a skipped or explicitly included secret."""
    reason = secret_reason(rel, head, whole)
    if reason is None:
        return True
    if matches(rel, source.include_secrets):
        found.included_secrets.append(rel)
        return True
    found.skipped_secrets.append({"path": rel, "reason": reason})
    log.warning(
        "configs/%s: left out %s (%s); add it to include_secrets to keep it", source.name, rel, reason
    )
    return False


def collect_local(source: ConfigSource, writer: ArchiveWriter) -> Collected:
    root = Path(source.path).expanduser()
    if not root.is_dir():
        raise NotFound(f"configuration source {source.name!r}: directory {source.path} does not exist")
    found, candidates = Collected(), []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for filename in filenames:
            full = Path(dirpath) / filename
            rel = full.relative_to(root).as_posix()
            if is_selected(rel, source.include, source.exclude):
                candidates.append((rel, full))
    for rel, full in sorted(candidates):
        info = full.lstat()
        if not stat.S_ISREG(info.st_mode):
            found.skipped_other.append(rel)  # symlinks, sockets, fifos: not configuration
            continue
        if info.st_size <= READ_WHOLE_LIMIT:
            data = full.read_bytes()
            if not _take(
                source, rel, data[:HEAD_BYTES], data if needs_whole_file(rel, len(data)) else None, found
            ):
                continue
            found.files.append(writer.add_bytes(rel, data, info.st_mode, info.st_mtime))
            _check_syntax(rel, data, found)
        else:
            with open(full, "rb") as handle:
                head = handle.read(HEAD_BYTES)
            if _take(source, rel, head, None, found):
                found.files.append(writer.add_file(rel, full))
    return found


def parse_gs(path: str) -> tuple[str, str]:
    """(bucket, prefix ending in '/' or empty) of a gs:// path."""
    if not path.startswith("gs://"):
        raise InvalidInput(f"not a gs:// path: {path!r}")
    bucket, _, prefix = path[5:].partition("/")
    check_bucket(bucket)
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


def collect_gcs(source: ConfigSource, writer: ArchiveWriter, client: Any) -> Collected:
    bucket, prefix = parse_gs(source.path)
    with converted_errors(f"configuration source {source.path}"):
        if client.lookup_bucket(bucket, timeout=TIMEOUT, retry=RETRY) is None:
            raise NotFound(f"configuration source {source.name!r}: bucket gs://{bucket} does not exist")
        blobs = list(client.list_blobs(bucket, prefix=prefix or None, timeout=TIMEOUT, retry=RETRY))
    chosen = sorted(
        ((b.name[len(prefix) :], b) for b in blobs if not b.name.endswith("/")),
        key=lambda item: item[0],
    )
    chosen = [(rel, b) for rel, b in chosen if is_selected(rel, source.include, source.exclude)]
    found = Collected()
    safe = []
    for rel, blob in chosen:
        try:
            check_member_name(rel)
            safe.append((rel, blob))
        except InvalidInput:  # an object name like 'a/../b' cannot be restored as a file
            found.skipped_other.append(rel)
            log.warning("configs/%s: left out object %r: not a safe relative file path", source.name, rel)
    chosen = safe

    def download(item: tuple[str, Any]) -> bytes:
        with converted_errors(f"reading gs://{bucket}/{item[1].name}"):
            # the listed blob carries its generation: every file comes from the listed state
            data: bytes = item[1].download_as_bytes(timeout=TIMEOUT, retry=RETRY)
            return data

    for (rel, blob), data in zip(chosen, parallel_map(download, chosen, workers=8), strict=True):
        if not _take(
            source, rel, data[:HEAD_BYTES], data if needs_whole_file(rel, len(data)) else None, found
        ):
            continue
        mtime = blob.updated.timestamp() if blob.updated else 0.0
        found.files.append(writer.add_bytes(rel, data, 0o644, mtime))
        _check_syntax(rel, data, found)
    return found


def _check_syntax(rel: str, data: bytes, found: Collected) -> None:
    problem = syntax_problem(rel, data)
    if problem:
        found.warnings.append(problem)


class Location:
    """A restore target. Subclasses implement state / read / mode / write / describe."""

    def describe(self) -> str:
        raise NotImplementedError

    def state(self, path: str) -> tuple[str, bytes | None]:
        """('missing'|'file'|'link'|'dir', current bytes for 'file')."""
        raise NotImplementedError

    def read(self, path: str) -> bytes | None:
        kind, data = self.state(path)
        return data if kind == "file" else None

    def mode(self, path: str) -> int | None:
        return None

    def prepare(self) -> None:
        """Create the root if needed (called only when something will be written)."""

    def write(self, record: FileRecord, data: bytes) -> None:
        raise NotImplementedError

    def files(self) -> list[str]:
        """Relative paths of the regular files here (none when the root does not exist)."""
        raise NotImplementedError

    def delete(self, path: str) -> None:
        """Delete the file `path` (one already gone is fine)."""
        raise NotImplementedError

    def plan(self, records: list[FileRecord], contents: dict[str, bytes]) -> list[dict[str, Any]]:
        """Per file, what restoring it here changes (`change` as in tasks.engine.protocol.CHANGES), with
        a text diff for replaced files that are not secret-looking."""
        actions = []
        for record in records:
            kind, current = self.state(record.path)
            data = contents[record.path]
            item: dict[str, Any] = {"name": record.path, "size": record.size}
            if kind == "file" and current == data and self.mode(record.path) in (None, record.mode):
                item["change"] = "unchanged"
            elif kind == "missing":
                item["change"] = "create"
            elif kind == "dir":
                item["change"] = "blocked"
                item["why"] = "a directory is in the way"
            else:
                item["change"] = "replace"
                if kind == "link":
                    item["why"] = "a symbolic link is in the way"
                elif current is not None and secret_reason(record.path) is None:
                    diff = text_diff(record.path, current, data)
                    if diff is not None:
                        item["diff"] = diff
            actions.append(item)
        return actions

    def write_planned(
        self,
        records: list[FileRecord],
        contents: dict[str, bytes],
        actions: list[dict[str, Any]],
        overwrite: bool,
    ) -> None:
        """Write the files the plan creates (and replaces, with `overwrite`)."""
        allowed = ("create", "replace") if overwrite else ("create",)
        writes = {a["name"] for a in actions if a["change"] in allowed}
        if writes:
            self.prepare()
        for record in records:
            if record.path in writes:
                self.write(record, contents[record.path])


class LocalDirectory(Location):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()

    def describe(self) -> str:
        return str(self.root)

    def _dest(self, path: str) -> Path:
        dest = self.root / check_member_name(path)
        real_root = Path(os.path.realpath(self.root))
        ancestor = dest.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        inside = ancestor == self.root or self.root in ancestor.parents  # else the root does not exist yet
        if inside and not Path(os.path.realpath(ancestor)).is_relative_to(real_root):
            raise ValidationFailed(
                f"refused {path!r}: a link under {self.root} leads outside it ({ancestor})"
            )
        return dest

    def state(self, path: str) -> tuple[str, bytes | None]:
        dest = self._dest(path)
        if dest.is_symlink():
            return "link", None
        if dest.is_dir():
            return "dir", None
        if not dest.exists():
            return "missing", None
        return "file", dest.read_bytes()

    def mode(self, path: str) -> int | None:
        dest = self._dest(path)
        return dest.lstat().st_mode & 0o777 if dest.is_file() and not dest.is_symlink() else None

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def write(self, record: FileRecord, data: bytes) -> None:
        dest = self._dest(record.path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._dest(record.path)  # check again now that the parents exist
        handle, temp = tempfile.mkstemp(dir=dest.parent, prefix=".backstop-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.chmod(temp, record.mode & 0o777)
            os.utime(temp, (record.mtime, record.mtime))
            os.replace(temp, dest)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def files(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = []
        for dirpath, _, filenames in os.walk(self.root, followlinks=False):
            for filename in filenames:
                full = Path(dirpath) / filename
                if full.is_file() and not full.is_symlink():
                    found.append(full.relative_to(self.root).as_posix())
        return sorted(found)

    def delete(self, path: str) -> None:
        self._dest(path).unlink(missing_ok=True)


class GcsPrefix(Location):
    def __init__(self, path: str, client: Any) -> None:
        self.bucket_name, self.prefix = parse_gs(path)
        self.client = client
        self.bucket = client.bucket(self.bucket_name)

    def describe(self) -> str:
        return f"gs://{self.bucket_name}/{self.prefix}"

    def state(self, path: str) -> tuple[str, bytes | None]:
        name = self.prefix + str(check_member_name(path))
        try:
            with converted_errors(f"reading gs://{self.bucket_name}/{name}"):
                return "file", self.bucket.blob(name).download_as_bytes(timeout=TIMEOUT, retry=RETRY)
        except NotFound:
            return "missing", None

    def prepare(self) -> None:
        with converted_errors(f"target bucket gs://{self.bucket_name}"):
            if self.client.lookup_bucket(self.bucket_name, timeout=TIMEOUT, retry=RETRY) is None:
                raise NotFound(f"target bucket gs://{self.bucket_name} does not exist")

    def write(self, record: FileRecord, data: bytes) -> None:
        name = self.prefix + str(check_member_name(record.path))
        with converted_errors(f"writing gs://{self.bucket_name}/{name}"):
            self.bucket.blob(name).upload_from_string(data, timeout=TIMEOUT, retry=RETRY, checksum="crc32c")

    def files(self) -> list[str]:
        with converted_errors(f"listing gs://{self.bucket_name}/{self.prefix}"):
            if self.client.lookup_bucket(self.bucket_name, timeout=TIMEOUT, retry=RETRY) is None:
                return []
            blobs = self.client.list_blobs(
                self.bucket_name, prefix=self.prefix or None, timeout=TIMEOUT, retry=RETRY
            )
            return sorted(b.name[len(self.prefix) :] for b in blobs if not b.name.endswith("/"))

    def delete(self, path: str) -> None:
        name = self.prefix + str(check_member_name(path))
        try:
            with converted_errors(f"deleting gs://{self.bucket_name}/{name}"):
                self.bucket.blob(name).delete(timeout=TIMEOUT, retry=RETRY)
        except NotFound:
            return


def open_location(target: str, client: Any) -> Location:
    """A gs://bucket/prefix or a local directory."""
    if target.startswith("gs://"):
        return GcsPrefix(target, client)
    return LocalDirectory(target)
