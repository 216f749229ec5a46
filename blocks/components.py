"""Settings models of individual components, held by the settings block (no logic, no I/O)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from backstop.core.errors import InvalidInput
from backstop.core.secretbox import DEFAULT_SECRET_PATTERNS

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


class GkeClusterSettings(BaseModel):
    """One cluster protected by a Backup for GKE backup plan."""

    cluster: str = Field(description="Cluster short name (in settings.gke.location) or full resource name.")
    plan_name: str | None = Field(default=None, description="Backup plan id; default 'backstop-<cluster>'.")
    all_namespaces: bool = Field(default=True, description="Back up every namespace.")
    namespaces: list[str] = Field(default_factory=list, description="Back up only these namespaces.")
    applications: list[str] = Field(
        default_factory=list, description="Back up only these ProtectedApplications, as 'namespace/name'."
    )
    include_volume_data: bool = Field(default=True, description="Back up persistent volume data.")
    include_secrets: bool = Field(default=True, description="Back up Secrets (encrypted with the key below).")
    encryption_key: str | None = Field(default=None, description="Cloud KMS key for the backup (CMEK).")
    retain_days: int | None = Field(
        default=None,
        ge=0,
        description="Backup for GKE deletes backups older than this (0: never). Empty: Backstop sets the "
        "plan to the longest its own retention keeps a GKE backup of this cluster, so no kept backup "
        "outlives its data; a shorter value is named by `backstop preflight`.",
    )
    delete_lock_days: int = Field(
        default=0, ge=0, description="Backups cannot be deleted for this many days."
    )
    drill_namespaces: list[str] = Field(
        default_factory=list, description="Namespaces a restore drill restores under a scratch suffix."
    )

    @model_validator(mode="after")
    def _one_scope(self) -> GkeClusterSettings:
        if self.namespaces or self.applications:
            self.all_namespaces = False
        if self.namespaces and self.applications:
            raise ValueError(f"cluster {self.cluster}: give namespaces or applications, not both")
        if not (self.all_namespaces or self.namespaces or self.applications):
            raise ValueError(f"cluster {self.cluster}: choose all_namespaces, namespaces or applications")
        for app in self.applications:
            if app.count("/") != 1:
                raise ValueError(f"cluster {self.cluster}: application {app!r} must be 'namespace/name'")
        return self

    @property
    def short_name(self) -> str:
        return self.cluster.rsplit("/", 1)[-1]

    @property
    def plan_id(self) -> str:
        return self.plan_name or f"backstop-{self.short_name}"[:63]


class GkeSettings(BaseModel):
    """Backup for GKE settings (the `gke` field of the Backstop settings block)."""

    project: str | None = Field(
        default=None, description="Project of the clusters; default: settings.project."
    )
    location: str = Field(default="us-central1", description="Region of the backup plans and restore plans.")
    clusters: list[GkeClusterSettings] = Field(default_factory=list, description="Clusters to protect.")
    drop_threshold_percent: float = Field(
        default=50.0,
        ge=0,
        le=100,
        description="Validation fails when a count drops by more than this against the previous good backup.",
    )
    poll_seconds: float = Field(
        default=5.0, gt=0, description="Seconds between polls of a long-running operation."
    )
    operation_timeout_minutes: float = Field(
        default=240.0, gt=0, description="Give up following an operation after."
    )

    def cluster(self, name: str) -> GkeClusterSettings:
        """The settings of cluster `name` (short or full name); InvalidInput lists the known ones."""
        for item in self.clusters:
            if name in (item.cluster, item.short_name):
                return item
        known = ", ".join(c.short_name for c in self.clusters) or "none configured"
        raise InvalidInput(f"cluster {name!r} is not in settings.gke.clusters ({known})")
