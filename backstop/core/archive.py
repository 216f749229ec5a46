"""Configuration-file archives: selection, secret detection, deterministic tar.gz, safe reading.

Pure apart from the local files and archives it is handed: no Prefect, no Google.

- Patterns (`matches`): `*` and `?` stay inside one path segment, `**` spans segments
  (`**/*.yaml` also matches `a.yaml` at the top). A pattern without `/` is matched against the
  file name at any depth, the way `.gitignore` does (`*.bak` excludes `x/y/z.bak`); a pattern
  ending in `/` means everything under that folder.
- Secrets (`secret_reason`): Terraform state, private keys, service-account JSON, `.env`, `*.p12`.
  They are left out of a backup unless a source names them in `include_secrets`.
- Archives are deterministic: members sorted, mtime 0, uid/gid 0, no user names, gzip header
  without name or time, so the same files give the same bytes. The real mode and mtime of each file
  are kept in the manifest, and restore applies them.
- Reading (`read_archive`) refuses any member that is not a plain file or directory, or whose name
  is absolute or contains `..`, *before* anything is written, and then extracts with Python's own
  `filter="data"` as a second guard.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import tomllib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import IO, Any

from backstop.core.errors import InvalidInput, ValidationFailed

ARCHIVE_NAME = "configs.tar.gz"
HEAD_BYTES = 8192
MAX_JSON_SNIFF = 1 << 20
MAX_DIFF_BYTES = 64 * 1024

_SECRET_NAMES: list[tuple[str, str]] = [
    ("*.tfstate", "Terraform state"),
    ("*.tfstate.backup", "Terraform state backup"),
    ("*.pem", "PEM key or certificate"),
    ("id_rsa*", "SSH private key"),
    ("id_ecdsa*", "SSH private key"),
    ("id_ed25519*", "SSH private key"),
    ("*.key", "private key"),
    ("*.p12", "PKCS#12 key store"),
    ("*.pfx", "PKCS#12 key store"),
    (".env", "environment file"),
    (".env.*", "environment file"),
]
_PRIVATE_KEY = re.compile(rb"\s*-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


@dataclass(frozen=True)
class FileRecord:
    """One file of a configuration source, as the manifest keeps it."""

    path: str
    size: int
    mode: int
    mtime: float
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileRecord:
        return cls(
            str(data["path"]), int(data["size"]), int(data["mode"]), float(data["mtime"]), str(data["sha256"])
        )


# -- patterns ---------------------------------------------------------------------------------
@lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(path: str, patterns: list[str]) -> bool:
    """Whether the relative posix `path` matches one of `patterns` (see the module docstring)."""
    name = path.rsplit("/", 1)[-1]
    for pattern in patterns:
        pattern = pattern.strip().lstrip("/")
        if not pattern:
            continue
        if pattern.endswith("/"):  # a folder: everything under it
            pattern += "**"
        subject = path if "/" in pattern else name
        if _compile(pattern).match(subject) or pattern == path:
            return True
    return False


def is_selected(path: str, include: list[str], exclude: list[str]) -> bool:
    """Included by `include` and not excluded by `exclude`."""
    return matches(path, include) and not matches(path, exclude)


# -- secrets ----------------------------------------------------------------------------------
def secret_reason(path: str, head: bytes = b"", whole: bytes | None = None) -> str | None:
    """Why `path` looks like a secret, or None. `head` is the start of the file, `whole` all of it
    (for JSON files up to 1 MiB; service-account keys are recognised by their fields)."""
    for pattern, reason in _SECRET_NAMES:
        if matches(path, [pattern]):
            return reason
    if _PRIVATE_KEY.match(head):
        return "private key content"
    if path.endswith(".json") and whole is not None and b"private_key" in whole:
        try:
            data = json.loads(whole)
        except ValueError:
            return None
        if isinstance(data, dict) and data.get("type") == "service_account" and "private_key" in data:
            return "service-account key"
    return None


def needs_whole_file(path: str, size: int) -> bool:
    """Whether `secret_reason` needs the whole file (JSON small enough to parse)."""
    return path.endswith(".json") and size <= MAX_JSON_SNIFF


# -- syntax -----------------------------------------------------------------------------------
def syntax_problem(path: str, data: bytes) -> str | None:
    """A one-line description (file and line) of a syntax error in a YAML, JSON, TOML, Python or
    HCL file, or None when it parses or is of a kind not checked."""
    suffix = PurePosixPath(path).suffix.lower()
    if suffix not in (".yaml", ".yml", ".json", ".toml", ".py", ".tf", ".hcl", ".tfvars"):
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"{path}: not UTF-8 text (byte {exc.start})"
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            for _ in yaml.safe_load_all(text):
                pass
        elif suffix == ".json":
            json.loads(text)
        elif suffix == ".toml":
            tomllib.loads(text)
        elif suffix == ".py":
            compile(text, path, "exec", dont_inherit=True)
        else:
            return _hcl_problem(path, text)
    except SyntaxError as exc:
        return f"{path}: line {exc.lineno}: Python syntax error ({exc.msg})"
    except json.JSONDecodeError as exc:
        return f"{path}: line {exc.lineno}: JSON syntax error ({exc.msg})"
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        return f"{path}: {'line ' + found.group(1) + ': ' if found else ''}TOML syntax error ({exc})"
    except Exception as exc:  # yaml.YAMLError and friends carry a problem_mark
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        return f"{path}: {line}YAML syntax error ({problem})"
    return None


def _hcl_problem(path: str, text: str) -> str | None:
    try:
        import hcl2
    except ImportError:  # optional: HCL is checked only when python-hcl2 is installed
        return None
    try:
        hcl2.loads(text)
    except Exception as exc:
        line = getattr(exc, "line", None)
        where = f"line {line}: " if isinstance(line, int) and line > 0 else ""
        return f"{path}: {where}HCL syntax error ({type(exc).__name__})"
    return None


# -- building ---------------------------------------------------------------------------------
class _HashingReader(io.RawIOBase):
    """Reads from `raw`, hashing what passes through (so a file is read once)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.digest = raw, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(size)
        self.digest.update(chunk)
        return chunk


class ArchiveWriter:
    """Writes a deterministic tar.gz; add members in sorted order (`add_bytes` / `add_file`)."""

    def __init__(self, path: str | Path) -> None:
        self._raw = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6)
        self._tar = tarfile.open(fileobj=self._gz, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self._last = ""

    def _info(self, path: str, size: int, mode: int) -> tarfile.TarInfo:
        check_member_name(path)
        if path <= self._last:
            raise InvalidInput(
                f"archive members must be added in sorted order: {path!r} after {self._last!r}"
            )
        self._last = path
        info = tarfile.TarInfo(path)
        info.size, info.mode, info.mtime = size, mode & 0o777, 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def add_bytes(self, path: str, data: bytes, mode: int = 0o644, mtime: float = 0.0) -> FileRecord:
        self._tar.addfile(self._info(path, len(data), mode), io.BytesIO(data))
        return FileRecord(path, len(data), mode & 0o777, mtime, hashlib.sha256(data).hexdigest())

    def add_file(self, path: str, local: str | Path) -> FileRecord:
        with open(local, "rb") as handle:
            stat = os.fstat(handle.fileno())
            reader = _HashingReader(handle)
            self._tar.addfile(self._info(path, stat.st_size, stat.st_mode), reader)
        return FileRecord(path, stat.st_size, stat.st_mode & 0o777, stat.st_mtime, reader.digest.hexdigest())

    def close(self) -> None:
        self._tar.close()
        self._gz.close()
        self._raw.close()


# -- reading ----------------------------------------------------------------------------------
def check_member_name(name: str) -> PurePosixPath:
    """The relative path of an archive member; InvalidInput for absolute paths, `..` or oddities."""
    if not name or "\\" in name or "\x00" in name:
        raise InvalidInput(f"unsafe archive member {name!r}: empty, or contains a backslash or NUL")
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise InvalidInput(f"unsafe archive member {name!r}: absolute path")
    if ".." in path.parts:
        raise InvalidInput(f"unsafe archive member {name!r}: contains '..'")
    return path


def check_members(members: list[tarfile.TarInfo], where: str) -> list[tarfile.TarInfo]:
    """Refuse (ValidationFailed naming the member) anything but plain files and directories with
    safe relative names. Runs over every member before anything is extracted."""
    for member in members:
        try:
            check_member_name(member.name)
        except InvalidInput as exc:
            raise ValidationFailed(f"{where}: {exc}", [str(exc)]) from None
        if member.issym() or member.islnk():
            raise ValidationFailed(
                f"{where}: refused link member {member.name!r} -> {member.linkname!r}",
                [f"link member {member.name!r}"],
            )
        if not (member.isfile() or member.isdir()):
            raise ValidationFailed(
                f"{where}: refused special member {member.name!r} (device, fifo or other non-file)",
                [f"special member {member.name!r}"],
            )
    return members


def extract_archive(archive: str | Path, dest: str | Path, where: str) -> list[str]:
    """Check every member, then extract into the (new, empty) directory `dest` with filter="data".

    Returns the extracted file paths. A damaged archive raises ValidationFailed naming `where`.
    """
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = check_members(tar.getmembers(), where)
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4+; the members are checked above either way
                tar.extractall(dest, members=members, filter="data")
            else:
                tar.extractall(dest, members=members)  # noqa: S202 (every member checked above)
    except (tarfile.TarError, EOFError, OSError, zlib_error()) as exc:
        raise ValidationFailed(f"{where}: damaged archive ({exc})", [f"damaged archive: {exc}"]) from None
    root = Path(dest).resolve()
    for member in members:  # a last check that nothing landed outside dest
        if not (root / member.name).resolve().is_relative_to(root):
            raise ValidationFailed(f"{where}: member {member.name!r} resolved outside the target")
    return sorted(m.name for m in members if m.isfile())


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error


def iter_archive(archive: str | Path, where: str) -> Iterator[tuple[str, bytes]]:
    """Every file member's (path, bytes), after the same member checks; reads every byte."""
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = check_members(tar.getmembers(), where)
            for member in members:
                if member.isfile():
                    handle = tar.extractfile(member)
                    yield member.name, handle.read() if handle else b""
    except (tarfile.TarError, EOFError, OSError, zlib_error()) as exc:
        raise ValidationFailed(f"{where}: damaged archive ({exc})", [f"damaged archive: {exc}"]) from None


def compare_files(expected: list[FileRecord], actual: dict[str, str], where: str) -> list[str]:
    """Differences between the manifest's files and {path: sha256} found; each names the file."""
    problems = []
    wanted = {record.path: record for record in expected}
    if len(actual) != len(wanted):
        problems.append(f"{where}: {len(actual)} files, manifest lists {len(wanted)}")
    for path in sorted(wanted.keys() - actual.keys()):
        problems.append(f"{where}: {path} missing")
    for path in sorted(actual.keys() - wanted.keys()):
        problems.append(f"{where}: {path} not in the manifest")
    for path in sorted(wanted.keys() & actual.keys()):
        if actual[path] != wanted[path].sha256:
            problems.append(
                f"{where}: {path} sha256 {actual[path][:12]}..., manifest says {wanted[path].sha256[:12]}..."
            )
    return problems


def text_diff(path: str, old: bytes, new: bytes) -> str | None:
    """A unified diff from `old` (at the target) to `new` (in the backup), for small text files."""
    if len(old) > MAX_DIFF_BYTES or len(new) > MAX_DIFF_BYTES:
        return None
    try:
        before, after = old.decode("utf-8"), new.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"current/{path}", f"backup/{path}"
    )
    return "".join(lines)
