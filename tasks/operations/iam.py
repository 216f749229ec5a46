"""Least privilege per job: the roles of deployments/iam/roles.yaml against what the buckets grant.

`expected_permissions(spec, kind)` (pure) is, per service account, what it must hold on a bucket of
`kind` (backup, secondary, targets); a binding with a `prefix` (the work files under `_resume/`) is
granted with an IAM condition on that prefix of the objects' names, so it shows in no bucket-level
check; `compare(expected, granted)` (pure) gives what is missing and
what it should not have, among `CHECKED` (the permissions that matter for backups). `check_iam`
asks each bucket with testIamPermissions, as each service account (`client_for(email)`), and
returns one row per (service account, bucket).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from backstop.core.errors import BackstopError, ConfigError
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors

SPEC_PATH = Path(__file__).resolve().parents[2] / "deployments" / "iam" / "roles.yaml"
CHECKED = (
    "storage.buckets.delete",
    "storage.buckets.get",
    "storage.buckets.getIamPolicy",
    "storage.buckets.setIamPolicy",
    "storage.buckets.update",
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.get",
    "storage.objects.list",
    "storage.objects.overrideUnlockedRetention",
    "storage.objects.setIamPolicy",
    "storage.objects.setRetention",
    "storage.objects.update",
)
KINDS = ("backup", "secondary", "sources", "targets")


def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    import yaml

    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"IAM spec {path}: {exc}") from exc
    roles = {r["id"] for r in spec.get("roles", [])}
    for role in spec.get("roles", []):
        impersonation = [p for p in role["permissions"] if p.startswith("iam.serviceAccounts.")]
        if impersonation:  # one job's key must never reach another job's identity
            raise ConfigError(f"IAM spec {path}: role {role['id']} grants {', '.join(impersonation)}")
    for account in spec.get("service_accounts", []):
        for binding in account["bindings"]:
            if binding["role"] not in roles:
                raise ConfigError(
                    f"IAM spec {path}: {account['name']} is bound to unknown role {binding['role']}"
                )
            prefix = binding.get("prefix")
            if prefix is not None and (
                not isinstance(prefix, str) or not prefix.endswith("/") or '"' in prefix
            ):
                raise ConfigError(
                    f"IAM spec {path}: {account['name']}'s prefix {prefix!r} must be a folder (ending in /)"
                )
    return dict(spec)


def expected_permissions(spec: dict[str, Any], account: str, kind: str | set[str]) -> set[str]:
    """What service account `account` must hold on a bucket of `kind` (or of all these kinds, for a
    bucket that is several: a source that is also a restore target), and nothing more."""
    kinds = {kind} if isinstance(kind, str) else kind
    roles = {r["id"]: set(r["permissions"]) for r in spec["roles"]}
    [found] = [a for a in spec["service_accounts"] if a["name"] == account]
    return {
        p
        for b in found["bindings"]
        if kinds & set(b["buckets"]) and not b.get("prefix")  # a prefix's grant is on objects only
        for p in roles[b["role"]]
    }


def compare(expected: set[str], granted: set[str]) -> tuple[list[str], list[str]]:
    """(missing, should not have) among CHECKED."""
    granted = granted & set(CHECKED)
    return sorted(expected - granted), sorted(granted - expected)


def bindings(
    spec: dict[str, Any], project: str, buckets: dict[str, list[str]]
) -> dict[str, list[dict[str, Any]]]:
    """What to grant: per bucket, the IAM policy bindings (role, members, and for a binding with a
    `prefix` its condition), as the README's commands apply them."""
    out: dict[str, list[dict[str, Any]]] = {}
    for account in spec["service_accounts"]:
        member = f"serviceAccount:{email(account['name'], project)}"
        for binding in account["bindings"]:
            for kind in binding["buckets"]:
                for bucket in buckets.get(kind, []):
                    grant: dict[str, Any] = {
                        "role": f"projects/{project}/roles/{binding['role']}",
                        "members": {member},
                    }
                    if binding.get("prefix"):
                        grant["condition"] = prefix_condition(bucket, binding["prefix"])
                    out.setdefault(bucket, []).append(grant)
    return out


def prefix_condition(bucket: str, prefix: str) -> dict[str, str]:
    """The IAM condition that limits a binding to the objects of `bucket` under `prefix`."""
    return {
        "title": f"objects under {prefix}",
        "expression": f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/{prefix}")',
    }


def email(account: str, project: str) -> str:
    return f"{account}@{project}.iam.gserviceaccount.com"


def check_iam(
    spec: dict[str, Any], buckets: dict[str, list[str]], project: str, client_for: Callable[[str], Any]
) -> list[dict[str, Any]]:
    """One row per service account and bucket: ok, missing permissions, permissions it should not have.

    Args:
        spec: the loaded deployments/iam/roles.yaml.
        buckets: bucket names per kind (`KINDS`); a bucket of several kinds is checked once, against
            what the account needs on all of them.
        project: the project of the service accounts.
        client_for: a storage client acting as the given service account email.
    """
    kinds_of: dict[str, set[str]] = {}
    for kind, names in buckets.items():
        for name in names:
            kinds_of.setdefault(name, set()).add(kind)
    rows = []
    for account in spec["service_accounts"]:
        client = client_for(email(account["name"], project))
        for name, kinds in kinds_of.items():
            expected = expected_permissions(spec, account["name"], kinds)
            kind = "+".join(sorted(kinds))
            try:
                with converted_errors(f"testIamPermissions on gs://{name}"):
                    granted = set(
                        client.bucket(name).test_iam_permissions(list(CHECKED), timeout=TIMEOUT, retry=RETRY)
                    )
            except BackstopError as exc:
                rows.append(_row(account["name"], kind, name, "error", [], [], str(exc)))
                continue
            missing, extra = compare(expected, granted)
            level = "error" if missing or extra else "ok"
            rows.append(_row(account["name"], kind, name, level, missing, extra, ""))
    return rows


def _row(
    account: str, kind: str, bucket: str, level: str, missing: list[str], extra: list[str], error: str
) -> dict[str, Any]:
    return {
        "level": level,
        "service_account": account,
        "bucket": bucket,
        "kind": kind,
        "missing": ", ".join(missing),
        "should_not_have": ", ".join(extra),
        "error": error,
    }
