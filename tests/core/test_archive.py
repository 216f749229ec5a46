"""Configuration archives: deterministic building, refusal of unsafe members, secrets, patterns."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from backstop.core.archive import (
    ArchiveWriter,
    compare_files,
    extract_archive,
    is_selected,
    iter_archive,
    matches,
    secret_reason,
    syntax_problem,
    text_diff,
)
from backstop.core.errors import InvalidInput, ValidationFailed

pytestmark = pytest.mark.unit


def build(path: Path, files: dict[str, bytes]) -> list:
    writer = ArchiveWriter(path)
    records = [writer.add_bytes(name, data, 0o640, 1700000000.0) for name, data in sorted(files.items())]
    writer.close()
    return records


def crafted(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_member(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def link_member(name: str, target: str, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


def test_archive_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    files = {"b/x.yaml": b"a: 1\n", "a.json": b"{}", "c/d/e.py": b"print(1)\n"}
    first, second = tmp_path / "1.tar.gz", tmp_path / "2.tar.gz"
    records = build(first, files)
    build(second, files)
    assert first.read_bytes() == second.read_bytes()
    assert [r.path for r in records] == sorted(files)
    assert {r.path: r.sha256 for r in records} == {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    assert all(r.mode == 0o640 and r.mtime == 1700000000.0 for r in records)
    with tarfile.open(first) as tar:
        assert {m.mtime for m in tar.getmembers()} == {0}
    assert dict(iter_archive(first, "test")) == files
    out = tmp_path / "out"
    out.mkdir()
    assert extract_archive(first, out, "test") == sorted(files)
    assert (out / "c/d/e.py").read_bytes() == b"print(1)\n"


def test_writer_refuses_unsorted_and_unsafe_names(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path / "a.tar.gz")
    writer.add_bytes("b", b"")
    with pytest.raises(InvalidInput, match="sorted"):
        writer.add_bytes("a", b"")
    for bad in ("../x", "/etc/passwd", "a/../../b"):
        with pytest.raises(InvalidInput, match="unsafe"):
            writer.add_bytes(bad, b"")
    writer.close()


@pytest.mark.parametrize(
    ("members", "named"),
    [
        ([file_member("ok.txt"), file_member("../evil", b"pwned")], "../evil"),
        ([file_member("/etc/x", b"pwned")], "/etc/x"),
        ([link_member("root", "/"), file_member("root/tmp/evil", b"pwned")], "root"),
        ([link_member("up", "../../.."), file_member("up/evil", b"pwned")], "up"),
        ([file_member("a"), link_member("h", "/etc/passwd", hard=True)], "h"),
    ],
    ids=["dotdot", "absolute", "symlink-to-root", "symlink-up", "hardlink"],
)
def test_unsafe_members_are_refused_and_nothing_is_written(tmp_path: Path, members: list, named: str) -> None:
    archive = crafted(tmp_path / "evil.tar.gz", members)
    dest = tmp_path / "sandbox" / "dest"
    dest.mkdir(parents=True)
    with pytest.raises(ValidationFailed, match=repr(named).replace("/", ".")):
        extract_archive(archive, dest, "gs://b/evil.tar.gz")
    with pytest.raises(ValidationFailed):
        list(iter_archive(archive, "gs://b/evil.tar.gz"))
    assert list((tmp_path / "sandbox").rglob("*")) == [dest]  # nothing in dest, nothing beside it
    assert not (tmp_path / "evil").exists()


def test_device_member_is_refused(tmp_path: Path) -> None:
    info = tarfile.TarInfo("dev/sda")
    info.type = tarfile.BLKTYPE
    archive = crafted(tmp_path / "dev.tar.gz", [(info, None)])
    with pytest.raises(ValidationFailed, match="special member 'dev/sda'"):
        extract_archive(archive, tmp_path, "x")


def test_damaged_archive_is_reported(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    build(archive, {"a.yaml": b"a: 1\n" * 1000, "b.yaml": b"b: 2\n" * 1000})
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data[: len(data) - 10]))
    with pytest.raises(ValidationFailed, match="damaged archive"):
        list(iter_archive(archive, "gs://b/a.tar.gz"))


@pytest.mark.parametrize(
    ("path", "content", "reason"),
    [
        ("infra/terraform.tfstate", b"{}", "Terraform state"),
        ("infra/terraform.tfstate.backup", b"{}", "Terraform state backup"),
        ("certs/server.pem", b"x", "PEM"),
        ("home/.ssh/id_rsa", b"x", "SSH"),
        ("home/.ssh/id_rsa.pub", b"x", "SSH"),
        ("tls/server.key", b"x", "private key"),
        ("store.p12", b"x", "PKCS"),
        (".env", b"A=1", "environment file"),
        ("app/.env.production", b"A=1", "environment file"),
        ("notes.txt", b"\n-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA", "private key content"),
        ("sa.json", b'{"type": "service_account", "private_key": "k"}', "service-account key"),
    ],
)
def test_secrets_are_recognised(path: str, content: bytes, reason: str) -> None:
    found = secret_reason(path, content[:8192], content)
    assert found is not None and reason in found


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("config.json", b'{"type": "service_account"}'),
        ("docs/keys.md", b"How to rotate a key: never paste -----BEGIN PRIVATE KEY----- here"),
        ("main.tf", b'resource "x" "y" {}'),
        ("environment.yaml", b"a: 1"),
    ],
)
def test_ordinary_files_are_not_secrets(path: str, content: bytes) -> None:
    assert secret_reason(path, content, content) is None


def test_patterns() -> None:
    assert matches("a.yaml", ["**/*.yaml"]) and matches("x/y/a.yaml", ["**/*.yaml"])
    assert matches("x/y/z.bak", ["*.bak"])  # no slash: file name at any depth
    assert matches("x/a.yaml", ["x/*.yaml"]) and not matches("x/y/a.yaml", ["x/*.yaml"])
    assert matches(".git/config", ["**/.git/**"]) and matches("a/.git/HEAD", ["**/.git/**"])
    assert matches("dags/a.py", ["dags/**"]) and not matches("dagsx/a.py", ["dags/**"])
    assert matches("dags/sub/a.py", ["dags/"]) and not matches("dagsx/a.py", ["dags/"])
    assert is_selected("dags/a.py", ["dags/**", "*.tf"], ["*_test.py"])
    assert not is_selected("dags/a_test.py", ["dags/**"], ["*_test.py"])
    assert not is_selected("README.md", ["dags/**", "*.tf"], [])


def test_syntax_problems_name_file_and_line() -> None:
    assert (
        syntax_problem("p/a.yaml", b"a: 1\nb: : 2\n")
        == "p/a.yaml: line 2: YAML syntax error (mapping values are not allowed here)"
    )
    # A missing comma is reported at the next key by every Python; where a trailing comma is
    # reported moved in 3.13 (at the comma, not at the brace): either line names the problem.
    assert "a.json: line 3: JSON syntax error" in (syntax_problem("a.json", b'{\n"a": 1\n"b": 2}') or "")
    assert (syntax_problem("a.json", b'{\n"a": 1,\n}') or "").startswith(
        ("a.json: line 2:", "a.json: line 3:")
    )
    assert "line 2" in (syntax_problem("a.toml", b"x = 1\ny = \n") or "")
    assert "line 2" in (syntax_problem("dag.py", b"import os\ndef f(:\n") or "")
    assert "line 2" in (syntax_problem("main.tf", b'resource "a" "b" {\n  x = \n}\n') or "")
    for name, good in [
        ("a.yaml", b"a: [1, 2]\n"),
        ("a.json", b"{}"),
        ("a.toml", b"a = 1"),
        ("a.py", b"x = 1"),
        ("a.tf", b'a = "b"\n'),
        ("a.sql", b"select ("),
        ("a.md", b"{"),
    ]:
        assert syntax_problem(name, good) is None


def test_compare_and_diff() -> None:
    from backstop.core.archive import FileRecord

    expected = [FileRecord("a", 1, 0o644, 0.0, "1" * 64), FileRecord("b", 1, 0o644, 0.0, "2" * 64)]
    problems = compare_files(expected, {"a": "1" * 64, "c": "3" * 64}, "w")
    assert "w: b missing" in problems and "w: c not in the manifest" in problems
    assert compare_files(expected, {"a": "1" * 64, "b": "9" * 64}, "w") == [
        "w: b sha256 999999999999..., manifest says 222222222222..."
    ]
    diff = text_diff("a.yaml", b"a: 1\nb: 2\n", b"a: 1\nb: 3\n")
    assert diff is not None and "-b: 2" in diff and "+b: 3" in diff
    assert text_diff("x.bin", b"\xff\xfe", b"a") is None


def test_add_file_streams_and_hashes_once(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(bytes(range(256)) * 4096)
    source.chmod(0o600)
    writer = ArchiveWriter(tmp_path / "a.tar.gz")
    record = writer.add_file("big.bin", source)
    writer.close()
    assert record.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert (record.size, record.mode) == (source.stat().st_size, 0o600)
    assert dict(iter_archive(tmp_path / "a.tar.gz", "t")) == {"big.bin": source.read_bytes()}


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("infra/prod.tfstate", "Terraform state"),
        ("infra/prod.tfstate.backup", "Terraform state backup"),
        ("certs/server.pem", "PEM key or certificate"),
        ("home/.ssh/id_rsa", "SSH private key"),
        ("home/.ssh/id_ecdsa.pub", "SSH private key"),
        ("home/.ssh/id_ed25519", "SSH private key"),
        ("tls/server.key", "private key"),
        ("tls/store.p12", "PKCS#12 key store"),
        ("tls/store.pfx", "PKCS#12 key store"),
        (".env", "environment file"),
        ("app/.env.production", "environment file"),
    ],
)
def test_every_secret_file_name_is_left_out(path: str, reason: str) -> None:
    assert secret_reason(path) == reason
