"""Every deployment in prefect.yaml can run: its parameters exist and scheduled runs need no more."""

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

SPEC = yaml.safe_load((Path(__file__).parents[2] / "prefect.yaml").read_text())


@pytest.mark.parametrize("deployment", SPEC["deployments"], ids=lambda d: d["name"])
def test_deployment_parameters_match_the_flow(deployment: dict) -> None:
    path, name = deployment["entrypoint"].split(":")
    flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)
    signature = inspect.signature(flow.fn)
    given = deployment.get("parameters") or {}
    unknown = set(given) - set(signature.parameters)
    assert not unknown, f"{deployment['name']}: unknown parameters {unknown}"
    if deployment.get("schedules") or deployment.get("triggers"):
        required = {n for n, p in signature.parameters.items() if p.default is inspect.Parameter.empty}
        assert required <= set(given), f"{deployment['name']}: scheduled runs lack {required - set(given)}"
