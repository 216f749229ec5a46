import importlib

import pytest

from backstop_cli.main import COMMAND_MODULES, build_parser, main

pytestmark = pytest.mark.unit


def test_every_command_module_exists_and_registers() -> None:
    for name in COMMAND_MODULES:
        assert hasattr(importlib.import_module(name), "register"), name
    build_parser()


@pytest.mark.parametrize(
    "argv", [[], ["backup"], ["restore", "gcs"], ["list", "--bogus"], ["health", "--trend", "-3"]]
)
def test_usage_errors_are_one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: backstop") and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["restore", "gcs", "--bucket", "raw-data", "--overwrite"],
        ["restore", "bigquery", "--dataset", "sales", "--overwrite"],
        ["restore", "configs", "--source", "platform", "--overwrite"],
        ["restore", "composer", "--environment", "analytics", "--overwrite"],
        ["restore", "gke", "--cluster", "prod", "--overwrite"],
    ],
)
def test_overwriting_the_original_needs_yes(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "needs --yes" in capsys.readouterr().err
