"""Cloud Composer flows: backup-composer, validate-composer, restore-composer (see flows/components.py)."""

from flows.components import component_flows

backup_composer, validate_composer, restore_composer = component_flows("composer")
