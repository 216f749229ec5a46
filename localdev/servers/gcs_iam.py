"""Bucket IAM for localdev/servers/gcs_policy_server.py: the permissions of predefined and custom
roles, who the caller is (the bearer token names the principal, `blocks.clients.LocalPrincipalCredentials`),
what it holds on a bucket through the bucket's IAM policy, the refusal of a caller without a
permission (`require_permissions`), testIamPermissions, and the permission each route needs.

IAM conditions: a binding whose condition is `resource.name.startsWith("projects/_/buckets/B/objects/P")`
grants its role on the objects whose names start with P only, as on Cloud Storage (never on the
bucket itself: listing, testIamPermissions). A condition of any other form grants nothing here."""

from __future__ import annotations

import re
import urllib.parse
from http import HTTPStatus
from pathlib import Path
from typing import Any

# The storage permissions of the predefined roles Backstop's checks meet (a subset of each role:
# the bucket- and object-level permissions).
PREDEFINED_ROLES: dict[str, set[str]] = {
    "roles/storage.objectViewer": {"storage.objects.get", "storage.objects.list"},
    "roles/storage.objectCreator": {"storage.objects.create"},
    "roles/storage.objectUser": {
        "storage.objects.create",
        "storage.objects.delete",
        "storage.objects.get",
        "storage.objects.list",
        "storage.objects.update",
    },
    "roles/storage.objectAdmin": {
        "storage.objects.create",
        "storage.objects.delete",
        "storage.objects.get",
        "storage.objects.getIamPolicy",
        "storage.objects.list",
        "storage.objects.setIamPolicy",
        "storage.objects.update",
    },
    "roles/storage.legacyBucketReader": {"storage.buckets.get", "storage.objects.list"},
    "roles/storage.admin": {
        "storage.buckets.create",
        "storage.buckets.delete",
        "storage.buckets.get",
        "storage.buckets.getIamPolicy",
        "storage.buckets.list",
        "storage.buckets.setIamPolicy",
        "storage.buckets.update",
        "storage.objects.create",
        "storage.objects.delete",
        "storage.objects.get",
        "storage.objects.getIamPolicy",
        "storage.objects.list",
        "storage.objects.setIamPolicy",
        "storage.objects.update",
    },
}


class RoleBook:
    """Permissions per role: the predefined storage roles and the custom roles of a YAML file."""

    def __init__(self, roles_file: str | None = None) -> None:
        self.roles = {name: set(perms) for name, perms in PREDEFINED_ROLES.items()}
        if roles_file:
            import yaml

            document = yaml.safe_load(Path(roles_file).read_text()) or {}
            for role in document.get("roles", []):
                self.roles[role["id"]] = set(role["permissions"])

    def permissions(self, role: str) -> set[str]:
        """Permissions of `role`: predefined by name, custom as `projects/<p>/roles/<id>`."""
        if role in self.roles:
            return self.roles[role]
        return self.roles.get(role.rsplit("/", 1)[-1], set())


def caller_token(request: Any) -> str:
    header = request.get_header("Authorization") or ""
    return str(header.removeprefix("Bearer ").strip())


_PREFIX_CONDITION = re.compile(r'^\s*resource\.name\.startsWith\(\s*"([^"]*)"\s*\)\s*$')


def _applies(binding: dict[str, Any], bucket: str, obj: str | None) -> bool:
    """Whether `binding` grants its role on object `obj` of `bucket` (None: on the bucket itself)."""
    condition = binding.get("condition")
    if not condition:
        return True
    found = _PREFIX_CONDITION.match(str(condition.get("expression") or ""))
    if found is None or obj is None:
        return False
    return f"projects/_/buckets/{bucket}/objects/{urllib.parse.unquote(obj)}".startswith(found.group(1))


def granted_permissions(
    request: Any, storage: Any, bucket: str, roles: RoleBook, obj: str | None = None
) -> set[str]:
    """What the caller may do on `bucket` (on its object `obj`, where a request names one) through the
    bucket's IAM policy (allUsers included)."""
    token = caller_token(request)
    members = {"allUsers"} if not token else {"allUsers", "allAuthenticatedUsers", token}
    policy = storage.get_bucket_iam_policy(bucket) or {}
    granted: set[str] = set()
    for binding in policy.get("bindings") or []:
        if members & set(binding.get("members") or []) and _applies(binding, bucket, obj):
            granted |= roles.permissions(binding.get("role", ""))
    return granted


class Denied(Exception):
    """The caller lacks a permission the request needs (HTTP 403, reason "forbidden")."""


def require_permissions(
    request: Any,
    storage: Any,
    bucket: str | None,
    roles: RoleBook | None,
    permissions: set[str],
    obj: str | None = None,
) -> None:
    """Raise Denied unless the caller holds `permissions` on `bucket` (a caller without a token is
    the emulator's owner, who may do everything; a bucket that does not exist is the handler's to answer)."""
    token = caller_token(request)
    if not token or roles is None or bucket is None or bucket not in storage.buckets:
        return
    missing = sorted(permissions - granted_permissions(request, storage, bucket, roles, obj))
    if missing:
        raise Denied(
            f"{token.split(':', 1)[-1]} does not have {missing[0]} access to the Google Cloud Storage "
            f"bucket or object. Permission '{missing[0]}' denied on resource."
        )


def test_iam_permissions(
    request: Any, response: Any, storage: Any, *args: Any, roles: RoleBook, **kwargs: Any
) -> None:
    """iam/testPermissions: the asked permissions the caller holds through the bucket's IAM policy."""
    name = request.params.get("bucket_name")
    if name not in storage.buckets:
        response.status = HTTPStatus.NOT_FOUND
        return
    granted = granted_permissions(request, storage, name, roles)
    asked = request.query.get("permissions") or []
    response.json(
        {"kind": "storage#testIamPermissionsResponse", "permissions": [p for p in asked if p in granted]}
    )


# The permission each route needs of a caller that names itself (see the module docstring).
def route_needs(regex: str, method: str) -> dict[str, str]:
    bucket, objects = "storage.buckets.", "storage.objects."
    if "/copyTo/" in regex or "/rewriteTo/" in regex:
        return {"bucket_name": objects + "get", "dest_bucket_name": objects + "create"}
    table = [
        ("/iam/testPermissions$", {}),
        ("/iam$", {"GET": bucket + "getIamPolicy", "PUT": bucket + "setIamPolicy"}),
        ("/lockRetentionPolicy$", {"POST": bucket + "update"}),
        ("/compose$", {"POST": objects + "create"}),
        # an upload's object name is in its body: PolicyStorage checks storage.objects.create there
        ("/o$", {"GET": objects + "list"}),
        (
            "/o/(?P<object_id>.*[^/]+)$",
            {"GET": objects + "get", "DELETE": objects + "delete"},  # PATCH: object_patch decides
        ),
        (
            "(?P<bucket_name>[-.\\w]+)$",
            {"GET": bucket + "get", "PATCH": bucket + "update", "DELETE": bucket + "delete"},
        ),
    ]
    for suffix, perms in table:
        if regex.endswith(suffix):
            return {"bucket_name": perms[method]} if method in perms else {}
    return {}
