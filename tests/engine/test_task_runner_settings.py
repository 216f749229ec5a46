"""`backstop settings set` takes the task runner fields (what it validates before saving)."""

import pytest

from backstop.core.errors import InvalidInput
from backstop_cli.commands.settings import assign, document, validated
from blocks.settings import BackstopSettings

pytestmark = pytest.mark.unit


def test_settings_set_takes_the_dask_runner_fields() -> None:
    data = document(BackstopSettings(project="p", backup_bucket="b"))
    assert (data["task_runner"], data["dask_address"], data["dask_workers"]) == ("threads", None, 2)
    for key, raw in (
        ("task_runner", "dask"),
        ("dask_address", "tcp://dask-scheduler:8786"),
        ("dask_workers", "8"),
    ):
        assign(data, key, raw)
    settings = validated(data)
    assert (settings.task_runner, settings.dask_address, settings.dask_workers) == (
        "dask",
        "tcp://dask-scheduler:8786",
        8,
    )


@pytest.mark.parametrize(("key", "raw"), [("task_runner", "spark"), ("dask_workers", "0")])
def test_settings_set_refuses_a_wrong_runner_value(key: str, raw: str) -> None:
    data = document(BackstopSettings(project="p", backup_bucket="b"))
    assign(data, key, raw)
    with pytest.raises(InvalidInput, match=f"settings field '{key}'"):
        validated(data)
