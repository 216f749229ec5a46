"""The registered components by name, and where each is defined (imported only when used).

A module of its own with no imports, so the command line can list the components without loading
any of them (tasks/engine/protocol.py's `get_component` loads one).
"""

COMPONENTS: dict[str, str] = {
    "configs": "tasks.components.configs.component:COMPONENT",
    "bigquery": "tasks.components.bigquery.component:COMPONENT",
    "gcs": "tasks.components.gcs.component:COMPONENT",
    "composer": "tasks.components.composer.component:COMPONENT",
    "gke": "tasks.components.gke.component:COMPONENT",
}
