"""`backstop settings show | set KEY=VALUE ... | edit | export FILE | import FILE`.

The settings block as a YAML document a person can read and edit. Every change is validated against
the block's model before it is saved: a wrong value or an unknown field is one `error:` line naming
the field (`settings field 'retention.keep_last': Input should be greater than or equal to 0`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from backstop.core.errors import InvalidInput
from backstop_cli.main import ArgumentParser, emit

# Block bookkeeping in model_dump(), not a setting.
NOT_SETTINGS = {"block_type_slug"}


def register(verbs: Any, groups: dict[str, Any]) -> None:
    group = verbs.add_parser("settings", help="show, change, export or import the settings block")
    actions = group.add_subparsers(dest="action", required=True, parser_class=ArgumentParser)

    p = actions.add_parser("show", help="the settings as YAML")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=show)

    p = actions.add_parser("set", help="change fields: retention.keep_last=5 gcs_sources='[raw, curated]'")
    p.add_argument("assignments", nargs="+", metavar="KEY=VALUE", help="dotted field path = YAML value")
    p.set_defaults(handler=set_fields)

    p = actions.add_parser("edit", help="edit the settings in $EDITOR, validated before saving")
    p.set_defaults(handler=edit)

    p = actions.add_parser("export", help="write the settings to a YAML file")
    p.add_argument("file", type=Path)
    p.set_defaults(handler=export)

    p = actions.add_parser("import", help="replace the settings with a YAML file (validated first)")
    p.add_argument("file", type=Path)
    p.set_defaults(handler=import_file)


# -- the document --------------------------------------------------------------------------
def document(settings: Any) -> dict[str, Any]:
    """The settings as plain data (what export writes and import reads)."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    return {k: data[k] for k in type(settings).model_fields if k not in NOT_SETTINGS}


def _unknown_fields(given: Any, known: Any, path: str = "") -> list[str]:
    """Dotted paths in `given` that the validated document `known` does not have."""
    if not isinstance(given, dict) or not isinstance(known, dict):
        if isinstance(given, list) and isinstance(known, list):
            return [
                u
                for i, (g, k) in enumerate(zip(given, known, strict=False))
                for u in _unknown_fields(g, k, f"{path}{i}.")
            ]
        return []
    found = []
    for key, value in given.items():
        if key not in known:
            found.append(f"{path}{key}")
        else:
            found += _unknown_fields(value, known[key], f"{path}{key}.")
    return found


def validated(data: Any) -> Any:
    """The settings block built from `data`; InvalidInput names the first wrong or unknown field."""
    from pydantic import ValidationError

    from blocks.settings import BackstopSettings

    if not isinstance(data, dict):
        raise InvalidInput("settings must be a YAML mapping of field: value")
    try:
        settings = BackstopSettings.model_validate({k: v for k, v in data.items() if k not in NOT_SETTINGS})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(document)"
        raise InvalidInput(f"settings field '{field}': {first['msg']}") from None
    unknown = _unknown_fields(data, document(settings))
    if unknown:
        raise InvalidInput(f"settings field '{unknown[0]}': no such field")
    return settings


def assign(data: dict[str, Any], key: str, raw: str) -> None:
    """Set dotted `key` (list items by index: configs.sources.0.path) to the YAML value `raw`."""
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise InvalidInput(f"settings field '{key}': value {raw!r} is not valid YAML") from exc
    parts = key.split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise InvalidInput(f"settings field '{key}': {part!r} is not an index of the list")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise InvalidInput(f"settings field '{key}': {'.'.join(parts[:depth])} has no fields")


# -- verbs ---------------------------------------------------------------------------------
def _load(args: argparse.Namespace) -> Any:
    from blocks.settings import load_settings

    return load_settings(args.settings)


def _save(args: argparse.Namespace, settings: Any) -> None:
    from backstop.core.errors import ConfigError

    try:
        before = _load(args)
    except ConfigError:  # a new settings block
        before = None
    settings.save(args.settings, overwrite=True)
    print(f"saved backstop-settings/{args.settings}")
    if before is not None:
        _follow_objectives(before, settings)


def _follow_objectives(before: Any, after: Any) -> None:
    """An RPO the deployed staleness automations use changed: make them again, or say which
    command does."""
    from blocks.settings import PLAN_OBJECTIVES

    names = sorted(set(PLAN_OBJECTIVES) | set(before.objectives) | set(after.objectives))
    changed = [c for c in names if _watched(before.objectives_for(c)) != _watched(after.objectives_for(c))]
    if not changed:
        return
    from backstop.core.errors import BackstopError
    from deployments.automations import follow_objectives

    try:
        for name, hours in follow_objectives(after, changed):
            print(f"updated automation {name}: alerts after {hours:g} h without a backup")
    except BackstopError as exc:
        print(
            f"the staleness alerts of {', '.join(changed)} keep their old RPO ({exc}): run `backstop deploy`"
        )


def _watched(objectives: Any) -> tuple[float, dict[str, float]]:
    """What the staleness automations follow of a component's objectives: its RPO and its parts'."""
    return objectives.rpo_hours, dict(objectives.part_rpo_hours)


def _component_objectives(data: dict[str, Any], key: str, settings: Any) -> None:
    """`objectives.<component>.<field>=...` changes that field only: the component's other objectives
    start from what applies today (the operations plan's), never from the model's defaults."""
    from blocks.settings import PLAN_OBJECTIVES

    parts = key.split(".")
    if parts[0] != "objectives" or len(parts) < 3:
        return
    component = parts[1]
    if component not in PLAN_OBJECTIVES:
        raise InvalidInput(
            f"settings field '{key}': no component {component!r} (one of {', '.join(sorted(PLAN_OBJECTIVES))})"
        )
    objectives = data.setdefault("objectives", {}) or {}
    data["objectives"] = objectives
    if objectives.get(component) is None:
        objectives[component] = settings.objectives_for(component).model_dump(mode="json")


def show(args: argparse.Namespace) -> int:
    data = document(_load(args))
    emit(args, data, yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())
    return 0


def set_fields(args: argparse.Namespace) -> int:
    """Change the named fields, and only those."""
    current = _load(args)
    data = document(current)
    for assignment in args.assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{assignment!r}: expected KEY=VALUE, e.g. retention.keep_last=5")
        _component_objectives(data, key.strip(), current)
        assign(data, key.strip(), raw)
    _save(args, validated(data))
    return 0


def export(args: argparse.Namespace) -> int:
    data = document(_load(args))
    args.file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    print(f"wrote {args.file}")
    return 0


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from exc


def import_file(args: argparse.Namespace) -> int:
    _save(args, validated(_read_yaml(args.file)))
    return 0


def edit(args: argparse.Namespace) -> int:
    data = document(_load(args))
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"backstop-settings-{args.settings}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        subprocess.run([*shlex.split(editor), str(path)], check=False)
        edited = _read_yaml(path)
    if edited == data:
        print("no changes")
        return 0
    _save(args, validated(edited))
    return 0
