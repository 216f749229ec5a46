"""The registered components by name, and where each is defined (imported only when used).

A module of its own with no imports, so the command line can list the components without loading
any of them (tasks/engine/protocol.py's `get_component` loads one), and build a component's flags
from its light `options.py` alone (`component_face`).
"""

COMPONENTS: dict[str, str] = {
    "configs": "tasks.components.configs.component:COMPONENT",
    "bigquery": "tasks.components.bigquery.component:COMPONENT",
    "gcs": "tasks.components.gcs.component:COMPONENT",
    "composer": "tasks.components.composer.component:COMPONENT",
    "gke": "tasks.components.gke.component:COMPONENT",
}


def options_module(name: str) -> str:
    """The light module of component `name` that holds its `Options` model, `NOUN` and `PART`
    (what the command line builds its flags from without loading the component)."""
    return COMPONENTS[name].split(":")[0].rsplit(".", 1)[0] + ".options"


def component_face(name: str) -> tuple[str, str, type]:
    """(noun, part, Options model) of component `name`, from its light options module."""
    import importlib

    module = importlib.import_module(options_module(name))
    return module.NOUN, module.PART, module.Options
