"""Settings models of individual components, held by the settings block (no logic, no I/O)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from backstop.secretbox import DEFAULT_SECRET_PATTERNS

DEFAULT_EXCLUDE = ["**/.git/**", "**/__pycache__/**", "*.pyc", "**/.terraform/**"]


class ConfigSource(BaseModel):
    """One set of configuration files: a local directory or a gs://bucket/prefix."""

    name: str = Field(description="Source name used in the catalog, e.g. 'pipelines-prod'.")
    path: str = Field(description="Local directory or gs://bucket/prefix to back up.")
    include: list[str] = Field(
        default_factory=lambda: ["**/*"], description="Glob patterns of files to take."
    )
    exclude: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDE), description="Glob patterns to leave out."
    )
    include_secrets: list[str] = Field(
        default_factory=list,
        description="Patterns of secret-looking files to take anyway (e.g. 'terraform.tfstate').",
    )


class ConfigsSettings(BaseModel):
    """Settings of the configuration files component (BackstopSettings.configs)."""

    sources: list[ConfigSource] = Field(
        default_factory=list, description="Sources the scheduled backup takes."
    )
    strict_syntax: bool = Field(default=False, description="Fail validation when a file does not parse.")


DEFAULT_COMPONENTS = ("gcs", "bigquery", "configs", "composer", "gke")


class TierSettings(BaseModel):
    """Storage-class tiers of backup objects (the `tiers` field of the settings block)."""

    nearline_after_days: int | None = Field(default=30, ge=1, description="Move to Nearline at this age.")
    coldline_after_days: int | None = Field(default=90, ge=1, description="Move to Coldline at this age.")
    archive_after_days: int | None = Field(default=None, ge=1, description="Move to Archive at this age.")
    delete_after_days: int | None = Field(
        default=None, ge=1, description="Delete at this age (off by default: retention decides)."
    )
    components: list[str] = Field(default_factory=lambda: list(DEFAULT_COMPONENTS))


class ComposerSettings(BaseModel):
    """Composer settings (the `composer` field of BackstopSettings)."""

    environments: list[str] = Field(
        default_factory=list, description="projects/P/locations/L/environments/E names."
    )
    airflow_auth_block: str | None = Field(
        default=None, description="Secret block holding the Airflow API user:password."
    )
    secrets_mode: Literal["encrypt", "reference"] = Field(
        default="encrypt", description="Encrypt secrets or keep references."
    )
    encryption_key_block: str | None = Field(
        default=None, description="Secret block holding the encryption key."
    )
    secret_variable_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SECRET_PATTERNS),
        description="Variables and env variables whose names match are secret.",
    )
    snapshot: bool = Field(
        default=False, description="Also save a Composer snapshot with each config backup."
    )
    snapshot_location: str | None = Field(
        default=None, description="gs:// folder for snapshots (default: the environment bucket)."
    )
    airflow_python: str | None = Field(
        default=None,
        description="Python of a venv with apache-airflow: validation then also loads the DAGs with DagBag.",
    )
