"""Configuration files flows: backup-configs, validate-configs, restore-configs (see flows/components.py)."""

from flows.components import component_flows

backup_configs, validate_configs, restore_configs = component_flows("configs")
