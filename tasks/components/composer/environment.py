"""Cloud Composer environments through the Composer API: names, buckets, Airflow access, config, snapshots.

Used by the Composer component (tasks/components/composer/component.py); every call converts API errors at the call site.
"""

from __future__ import annotations

from typing import Any, cast

from google.protobuf import json_format

from backstop.core.errors import ConfigError, InvalidInput
from backstop.core.secretbox import SecretBox, is_protected, is_secret_name, protect
from blocks.clients import composer_client
from blocks.components import ComposerSettings
from tasks.components.composer.airflow import AirflowApi
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors

LRO_TIMEOUT = 300.0


def load_secret(block_name: str | None, what: str) -> str:
    """The value of the Prefect Secret block `block_name`; ConfigError names the block."""
    if not block_name:
        raise ConfigError(f"composer settings name no {what} block")
    from prefect.blocks.system import Secret

    try:
        value = cast(Any, Secret.load(block_name)).get()
    except ValueError as exc:
        raise ConfigError(f"secret block 'secret/{block_name}' ({what}) not found") from exc
    return str(value)


def secret_box(cs: ComposerSettings, required: bool) -> SecretBox | None:
    if not required and not cs.encryption_key_block:
        return None
    return SecretBox(load_secret(cs.encryption_key_block, "encryption_key_block"))


def environment_name(cs: ComposerSettings, name: str) -> str:
    """The full name of environment `name` (a full name, or a short name from the settings)."""
    if name.startswith("projects/"):
        parts = name.split("/")
        if len(parts) != 6 or parts[2] != "locations" or parts[4] != "environments" or not all(parts[1::2]):
            raise InvalidInput(f"environment name {name!r} is not projects/P/locations/L/environments/E")
        return name
    matches = [e for e in cs.environments if e.rsplit("/", 1)[-1] == name]
    if matches:
        return matches[0]
    if cs.environments:  # another environment in the same project and location
        return cs.environments[0].rsplit("/", 1)[0] + "/" + name
    raise InvalidInput(f"environment {name!r} is not in the composer settings: give its full name")


def get_environment(client: Any, name: str) -> Any:
    with converted_errors(f"Composer environment {name}"):
        return client.get_environment(name=name, timeout=TIMEOUT, retry=RETRY)


def environment_bucket(env: Any) -> str:
    prefix = env.config.dag_gcs_prefix
    if not prefix.startswith("gs://"):
        raise ConfigError(f"Composer environment {env.name} has no dag_gcs_prefix")
    return str(prefix.removeprefix("gs://").split("/", 1)[0])


def airflow_api(cs: ComposerSettings, env: Any) -> AirflowApi:
    if not env.config.airflow_uri:
        raise ConfigError(f"Composer environment {env.name} has no airflow_uri")
    user, sep, password = load_secret(cs.airflow_auth_block, "airflow_auth_block").partition(":")
    if not sep:
        raise ConfigError(f"secret block 'secret/{cs.airflow_auth_block}' must hold user:password")
    return AirflowApi(
        env.config.airflow_uri.rstrip("/") + "/api/v1", user, password, auth_block=str(cs.airflow_auth_block)
    )


def config_of(env: Any, cs: ComposerSettings, box: SecretBox | None) -> dict[str, Any]:
    """What restore compares: software config, sizes, URIs, labels; secret-named values protected."""
    software = json_format.MessageToDict(
        type(env).pb(env).config.software_config, preserving_proto_field_name=True
    )
    for field in ("env_variables", "airflow_config_overrides"):  # e.g. SMTP_PASSWORD, smtp-smtp_password
        values = software.get(field, {})
        for key, value in values.items():
            if is_secret_name(key, cs.secret_variable_patterns):
                values[key] = protect(value, cs.secrets_mode, box, f"composer/{env.name}/{field}/{key}")
    return {
        "name": env.name,
        "software_config": software,
        "environment_size": int(env.config.environment_size),
        "airflow_uri": env.config.airflow_uri,
        "dag_gcs_prefix": env.config.dag_gcs_prefix,
        "labels": dict(env.labels),
    }


def config_diff(backup: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """Fields that differ between two config dicts, flattened (`software_config.pypi_packages.pandas`)."""
    changes = []
    for key in sorted(set(backup) | set(current)):
        b, c, path = backup.get(key), current.get(key), f"{prefix}{key}"
        if isinstance(b, dict) and isinstance(c, dict) and not is_protected(b):
            changes += config_diff(b, c, path + ".")
        elif b != c and not (is_protected(b) and c is not None):
            changes.append({"field": path, "backup": "<secret>" if is_protected(b) else b, "current": c})
    return changes


def save_snapshot(cs: ComposerSettings, env: Any) -> str:
    request = {"environment": env.name, "snapshot_location": cs.snapshot_location or ""}
    with converted_errors(f"saving a snapshot of Composer environment {env.name}"):
        return str(
            composer_client()
            .save_snapshot(request=request, timeout=TIMEOUT)
            .result(timeout=LRO_TIMEOUT)
            .snapshot_path
        )


def load_snapshot(env: Any, path: str) -> None:
    with converted_errors(f"loading snapshot {path} into Composer environment {env.name}"):
        composer_client().load_snapshot(
            request={"environment": env.name, "snapshot_path": path}, timeout=TIMEOUT
        ).result(timeout=LRO_TIMEOUT)
