"""GKE (Backup for GKE) flows: backup-gke, validate-gke, restore-gke (see flows/components.py)."""

from flows.components import component_flows

backup_gke, validate_gke, restore_gke = component_flows("gke")
