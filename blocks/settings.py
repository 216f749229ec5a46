"""The settings block: where backups go, how long they stay, and what the objectives are.

Settings only; no logic beyond loading with a clear error. Functions in tasks/ take a
`BackstopSettings` object, so tests build one in memory without a Prefect server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import BaseModel, Field, field_validator

from backstop.core.errors import ConfigError
from blocks.components import ComposerSettings, ConfigsSettings, GkeSettings, TierSettings
from blocks.recovery import RecoveryChecks

DEFAULT_BLOCK_NAME = "default"


class RetentionSettings(BaseModel):
    """How many backups to keep; see backstop.core.retention for the exact rules."""

    keep_last: int = Field(default=3, ge=0, description="Always keep the newest N backups.")
    keep_daily: int = Field(default=7, ge=0, description="Keep the newest backup of each of the last N days.")
    keep_weekly: int = Field(
        default=4, ge=0, description="Keep the newest backup of each of the last N weeks."
    )
    keep_monthly: int = Field(
        default=12, ge=0, description="Keep the newest backup of each of the last N months."
    )
    keep_yearly: int = Field(
        default=0, ge=0, description="Keep the newest backup of each of the last N years."
    )
    keep_within_days: float = Field(default=0, ge=0, description="Keep every backup younger than this.")
    min_validated: int = Field(default=1, ge=1, description="Never remove the newest N validated backups.")


class Objectives(BaseModel):
    """Recovery objectives of one component."""

    rpo_hours: float = Field(default=26, gt=0, description="Oldest acceptable age of the last good backup.")
    rto_minutes: float = Field(default=60, gt=0, description="Longest acceptable restore time.")
    part_rpo_hours: dict[str, float] = Field(
        default_factory=dict,
        description="RPO of a part backed up on its own schedule (Composer: dags, config), else rpo_hours.",
    )


# The operations plan's objectives (RPO / RTO per component); the settings' `objectives` override them.
PLAN_OBJECTIVES: dict[str, Objectives] = {
    "bigquery": Objectives(rpo_hours=24, rto_minutes=240),
    "gcs": Objectives(rpo_hours=24, rto_minutes=120),
    "configs": Objectives(rpo_hours=24, rto_minutes=60),
    "gke": Objectives(rpo_hours=24, rto_minutes=240),
    # metadata hourly, DAGs and config daily (prefect.yaml): each part against its own RPO
    "composer": Objectives(rpo_hours=1, rto_minutes=240, part_rpo_hours={"dags": 24, "config": 24}),
}


class BackstopSettings(Block):
    """Backstop settings: project, backup buckets, encryption, sources, retention, objectives.

    Schedules live in prefect.yaml (the one deployment spec), not here."""

    _block_type_name = "Backstop Settings"
    _block_type_slug = "backstop-settings"
    _description = "Where Backstop writes backups, how long it keeps them and the recovery objectives."

    project: str = Field(description="Google Cloud project that runs the jobs (and holds the data).")
    backup_project: str | None = Field(
        default=None,
        description="Project of the backup buckets: another project than `project` keeps the backups out of "
        "reach of the production project's owners and accounts (default: `project`).",
    )
    backup_bucket: str = Field(description="Primary backup bucket.")
    secondary_bucket: str | None = Field(
        default=None, description="Bucket in another region that receives a verified copy of every backup."
    )
    location: str = Field(default="US", description="Location for BigQuery jobs and new buckets.")
    kms_key_name: str | None = Field(
        default=None, description="Cloud KMS key (projects/.../cryptoKeys/...) for backup objects (CMEK)."
    )
    secondary_location: str | None = Field(
        default=None,
        description="Location of the secondary bucket: another region than `location` (preflight fails otherwise).",
    )
    secondary_kms_key_name: str | None = Field(
        default=None,
        description="Cloud KMS key for the secondary copy, in the secondary location (a key serves one location).",
    )
    hold_newest_validated: bool = Field(
        default=True,
        description="Keep a temporary hold on the manifest of the newest validated backup of every source.",
    )
    object_retention: Literal["off", "unlocked", "locked"] = Field(
        default="unlocked",
        description="Object retention (Object Retention Lock) on every object a backup references, until the "
        "date the retention plan keeps the backup to: 'unlocked' (an account with "
        "storage.objects.overrideUnlockedRetention may still shorten it), 'locked' (nobody can, for production) "
        "or 'off'. Needs backup buckets created with object retention (bootstrap does).",
    )
    object_retention_step_days: int = Field(
        default=7,
        ge=0,
        le=366,
        description="A new backup is locked until its keep date rounded up to a multiple of this many days, so "
        "the unchanged objects it shares with the backup before it need a longer lock once a step, not at every "
        "backup (an incremental backup of a million unchanged objects otherwise extends a million locks). A backup "
        "stays locked up to this long past its keep date; 0: exactly its keep date.",
    )
    secondary_credentials_block: str | None = Field(
        default=None,
        description="GcpCredentials block of the identity that writes the secondary copy (not the backup "
        "writer's: one stolen key then reaches one copy); default: the job's credentials.",
    )
    gcs_sources: list[str] = Field(
        default_factory=list, description="Buckets the scheduled Cloud Storage backup takes."
    )
    gcs_write_rate: float = Field(
        default=1000.0,
        gt=0,
        description="Object writes per second a copy starts at per destination bucket (doubled at most every "
        "20 minutes of sustained load, halved on 429 / 5xx: Cloud Storage's request-rate guideline).",
    )
    bigquery_datasets: list[str] = Field(
        default_factory=list, description="Datasets the scheduled backup takes."
    )
    bigquery_method: str = Field(
        default="read",
        description="'read' (Storage Read API to Parquet), 'extract' (extract jobs) or 'snapshot' (native table snapshots).",
    )
    bigquery_format: str = Field(
        default="parquet", description="File format of table data for the 'read' method: 'parquet' or 'avro'."
    )
    validate_sample_percent: float = Field(
        default=5.0, ge=0, le=100, description="Share of backed-up objects re-read during validation."
    )
    reverify_period_days: float = Field(
        default=28,
        gt=0,
        description="Every kept backup's stored bytes are re-read within this many days: each scheduled "
        "re-verification reads the share reverify_every_days / reverify_period_days (like restic's "
        "check --read-data-subset), and checks that data outside the bucket still exists.",
    )
    reverify_every_days: float = Field(
        default=7,
        gt=0,
        description="How often the re-verification runs (prefect.yaml's weekly-revalidate-kept-backups): "
        "with reverify_period_days it sets the share each run reads; health warns when the last run is older.",
    )
    drill_max_age_days: float = Field(
        default=35,
        gt=0,
        description="Health is in breach when a source's last restore drill is older than this (the "
        "monthly drill plus a few days).",
    )
    retention: RetentionSettings = Field(default_factory=RetentionSettings, description="Default retention.")
    retention_overrides: dict[str, RetentionSettings] = Field(
        default_factory=dict, description="Retention per component ('gcs') or component/source ('gcs/raw')."
    )
    objectives: dict[str, Objectives] = Field(
        default_factory=dict, description="RPO / RTO per component; components not named use the default."
    )
    configs: ConfigsSettings = Field(
        default_factory=ConfigsSettings, description="Configuration file sources."
    )
    tiers: TierSettings = Field(
        default_factory=TierSettings, description="Storage-class tiers of backup objects."
    )
    composer: ComposerSettings = Field(
        default_factory=ComposerSettings,
        description="Cloud Composer environments, Airflow auth and secrets handling.",
    )
    gke: GkeSettings | None = Field(default=None, description="Backup for GKE clusters and thresholds.")
    credentials_block: str | None = Field(
        default=None,
        description="GcpCredentials block the jobs use (secret service-account key); default Application Default Credentials.",
    )
    recovery_checks: RecoveryChecks = Field(
        default_factory=RecoveryChecks, description="User-defined checks run after each step of a recovery."
    )
    notify_block: str | None = Field(
        default=None, description="Name of a notification block (e.g. 'slack-webhook/ops') for failures."
    )
    task_runner: Literal["threads", "dask"] = Field(
        default="threads",
        description="Where a backup's units (object batches, tables, GKE and Composer parts) run: 'threads' "
        "on the flow run's own machine, or 'dask' on a Dask cluster (deployments/README.md).",
    )
    dask_address: str | None = Field(
        default=None,
        description="Scheduler address of the Dask cluster for task_runner 'dask' (tcp://host:8786); "
        "empty: each backup starts a local cluster of dask_workers processes.",
    )
    dask_workers: int = Field(
        default=2,
        ge=1,
        description="Worker processes of that local Dask cluster (when dask_address is empty).",
    )

    @field_validator("object_retention", mode="before")
    @classmethod
    def _off_as_yaml_reads_it(cls, value: Any) -> Any:
        """`object_retention=off` on the command line or in an imported file: YAML reads it as false."""
        return "off" if value is False else value

    def retention_for(self, component: str, source: str) -> RetentionSettings:
        return (
            self.retention_overrides.get(f"{component}/{source}")
            or self.retention_overrides.get(component)
            or self.retention
        )

    @property
    def buckets_project(self) -> str:
        """The project of the backup buckets: `backup_project`, else `project`."""
        return self.backup_project or self.project

    def objectives_for(self, component: str) -> Objectives:
        """The settings' objectives of `component`, else the operations plan's, else the default."""
        return self.objectives.get(component) or PLAN_OBJECTIVES.get(component, Objectives())


_loaded: dict[str, BackstopSettings] = {}


@contextmanager
def loaded_already(name: str, settings: BackstopSettings) -> Iterator[None]:
    """Within it, `load_settings(name)` answers `settings` without asking the API again: for a
    command that has just loaded them and then runs a flow in its own process (the CLI's restore
    checks its input with the settings before the flow starts)."""
    _loaded[name] = settings
    try:
        yield
    finally:
        _loaded.pop(name, None)


def load_settings(name: str = DEFAULT_BLOCK_NAME) -> BackstopSettings:
    """Load the settings block `name`; a missing or malformed block raises ConfigError naming it."""
    if name in _loaded:
        return _loaded[name]
    try:
        settings: Any = BackstopSettings.load(name)
    except ValueError as exc:
        raise ConfigError(
            f"settings block 'backstop-settings/{name}' not found: run `backstop bootstrap` or create it in the UI"
        ) from exc
    except Exception as exc:  # pydantic errors for a malformed document, API errors
        raise ConfigError(f"settings block 'backstop-settings/{name}' could not be loaded: {exc}") from exc
    from blocks.clients import use_credentials_block

    use_credentials_block(settings.credentials_block)
    return settings
