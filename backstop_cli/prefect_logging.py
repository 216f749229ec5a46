"""Prefect's logging set up again for a warm command, in ~13 ms instead of ~40.

Prefect renders its logging.yml as a template over *every* setting (`to_environment_variables`:
~300 values, ~40 ms) to fill in the three it names (`${PREFECT_LOGGING_LEVEL}`, ...). A warm
command's child sets logging up again for its own environment and terminal (backstop_cli/warm.py),
so it pays that on every command. Here a name is looked up in its own section of the settings
(`PREFECT_LOGGING_LEVEL` in `logging`), the whole set rendered only for a name no section holds
(`${PREFECT_HOME}` in a user's own logging.yml): the same values, so the same configuration
(tests/cli/test_prefect_logging.py compares it with Prefect's own).
"""

from __future__ import annotations

import os
import string
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


class _SettingsByName(Mapping[str, str]):
    """The settings as environment variables (`to_environment_variables(include_aliases=True)`), each
    section rendered when a name of it is first asked for."""

    def __init__(self, settings: Any) -> None:
        from prefect.settings.base import PrefectBaseSettings

        self.settings = settings
        fields = type(settings).model_fields
        self.sections = {
            f"PREFECT_{name.upper()}_": getattr(settings, name)
            for name in fields
            if isinstance(getattr(settings, name), PrefectBaseSettings)
        }
        self.rendered: dict[str, dict[str, str]] = {}

    def _all(self) -> dict[str, str]:
        if "" not in self.rendered:
            self.rendered[""] = self.settings.to_environment_variables(include_aliases=True)
        return self.rendered[""]

    def __getitem__(self, name: str) -> str:
        for prefix, section in self.sections.items():
            if name.startswith(prefix):
                if prefix not in self.rendered:
                    self.rendered[prefix] = section.to_environment_variables(include_aliases=True)
                if name in self.rendered[prefix]:
                    return self.rendered[prefix][name]
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def load_logging_config(path: Path) -> dict[str, Any]:
    """Prefect's `load_logging_config(path)` (prefect/logging/configuration.py), with the template's
    names looked up as needed."""
    import yaml
    from prefect.logging import configuration
    from prefect.settings import get_current_settings
    from prefect.utilities.collections import dict_to_flatdict, flatdict_to_dict

    template = string.Template(path.read_text())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        text = template.substitute(_SettingsByName(get_current_settings()))
        config = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # safe_load, in C
    flat: dict[tuple[str, ...], Any] = dict_to_flatdict(config)
    for keys, value in flat.items():  # overrides from the environment, as Prefect reads them
        override = os.environ.get(configuration.to_envvar("PREFECT_LOGGING_" + "_".join(keys)).upper())
        if override:
            flat[keys] = override.split(",") if isinstance(value, list) else override
    return flatdict_to_dict(flat)


def setup_logging() -> None:
    """Prefect's `setup_logging(incremental=False)` with the quicker rendering above."""
    from prefect.logging import configuration

    prefects = configuration.load_logging_config
    configuration.load_logging_config = load_logging_config
    try:
        configuration.setup_logging(incremental=False)
    finally:
        configuration.load_logging_config = prefects
