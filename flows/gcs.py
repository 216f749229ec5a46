"""Cloud Storage flows: backup-gcs, validate-gcs, restore-gcs (see flows/components.py)."""

from flows.components import component_flows

backup_gcs, validate_gcs, restore_gcs = component_flows("gcs")
