"""A warm command's logging is configured exactly as Prefect's own `setup_logging` would configure it."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.logging import configuration
from prefect.settings import PREFECT_LOGGING_LEVEL, PREFECT_LOGGING_SETTINGS_PATH, temporary_settings

from backstop_cli import prefect_logging

pytestmark = pytest.mark.unit


def both(path: Path) -> tuple[dict, dict]:
    return prefect_logging.load_logging_config(path), configuration.load_logging_config(path)


def test_prefects_logging_yml_renders_as_prefect_renders_it(monkeypatch: pytest.MonkeyPatch) -> None:
    path = configuration.DEFAULT_LOGGING_SETTINGS_PATH
    ours, prefects = both(path)
    assert ours == prefects and ours["loggers"]["prefect"]["level"] == PREFECT_LOGGING_LEVEL.value()
    # a setting changed, and a handler's level and the root's handlers (a list) overridden by variables
    monkeypatch.setenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    monkeypatch.setenv("PREFECT_LOGGING_ROOT_HANDLERS", "console,api")
    with temporary_settings({PREFECT_LOGGING_LEVEL: "DEBUG"}):
        ours, prefects = both(path)
    assert ours == prefects
    assert (
        ours["loggers"]["prefect"]["level"] == "DEBUG" and ours["handlers"]["console"]["level"] == "CRITICAL"
    )
    assert ours["root"]["handlers"] == ["console", "api"]


def test_a_users_logging_yml_may_name_any_setting(tmp_path: Path) -> None:
    """Names outside a section's own prefix (PREFECT_HOME, an alias) are rendered from all settings."""
    mine = tmp_path / "logging.yml"
    mine.write_text(
        "version: 1\n"
        "handlers:\n"
        "  file: {class: logging.FileHandler, filename: '${PREFECT_HOME}/backstop.log', "
        "level: '${PREFECT_LOGGING_INTERNAL_LEVEL}'}\n"
        "root: {level: '${PREFECT_LOGGING_LEVEL}', handlers: [file]}\n"
    )
    with temporary_settings({PREFECT_LOGGING_SETTINGS_PATH: mine}):
        ours, prefects = both(mine)
    assert ours == prefects and ours["handlers"]["file"]["filename"].endswith("/backstop.log")
    with pytest.raises(KeyError):  # a name no setting has fails as in Prefect (string.Template)
        mine.write_text("version: 1\nroot: {level: '${PREFECT_NO_SUCH_SETTING}'}\n")
        prefect_logging.load_logging_config(mine)
