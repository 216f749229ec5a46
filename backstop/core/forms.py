"""How a component's options model shows in the Prefect UI's run form (pure: pydantic only).

The command line builds its flags from the same models (backstop_cli/commands/components.py), so each
component keeps its model in a light `options.py` that imports nothing heavier than pydantic.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict


def plain_form(schema: dict[str, Any]) -> None:
    """An options model's JSON schema as the Prefect UI's run form shows it: a field that may be empty
    (`X | None = None`) is a plain field of type X with no default (left empty, it is not sent, so
    the model's default applies), not a toggle captioned 'Property is type "None"'; a field marked
    `json_schema_extra={"form": False}` (a whole definition a program passes) is not shown."""
    properties: dict[str, Any] = schema.get("properties", {})
    for name, prop in list(properties.items()):
        if prop.pop("form", True) is False:
            del properties[name]
            continue
        prop.pop("flag", None), prop.pop("verbs", None)  # the command line's, not the form's
        typed = [b for b in prop.get("anyOf", []) if b.get("type") != "null"]
        if len(typed) == 1 and len(prop["anyOf"]) == 2:
            del prop["anyOf"]
            prop.update(typed[0])
        if "default" in prop and prop["default"] is None:
            del prop["default"]
    schema["required"] = [r for r in schema.get("required", []) if r in properties]
    if not schema["required"]:
        del schema["required"]


OPTIONS_CONFIG = ConfigDict(extra="forbid", json_schema_extra=plain_form)
