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


def _none_toggles(schema: dict) -> list[str]:
    """Fields the Prefect UI shows as a toggle captioned 'Property is type "None"': a choice of a
    type or null, at the top of the form or inside a model (the component's options)."""
    models = {"": schema, **schema.get("definitions", {})}
    return [
        f"{model}.{field}".lstrip(".")
        for model, body in models.items()
        for field, prop in body.get("properties", {}).items()
        if any(branch.get("type") == "null" for branch in prop.get("anyOf", []))
    ]


@pytest.mark.parametrize("deployment", SPEC["deployments"], ids=lambda d: d["name"])
def test_each_run_form_is_plain_fields_a_person_can_type_into(deployment: dict) -> None:
    """The UI's run form (the deployment's parameter schema, as `prefect deploy` makes it): no
    "None" toggles, and a form sent with every optional field left empty is accepted by the
    server's schema check and by the flow's own parameter models."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import validate

    path, name = deployment["entrypoint"].split(":")
    flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)
    schema = parameter_schema(flow).model_dump()
    assert _none_toggles(schema) == []
    given = deployment.get("parameters") or {}
    required = {n: "x" for n in schema.get("required", []) if n not in given}
    sent = given | required | ({"options": {}} if "options" in schema["properties"] else {})
    assert validate(sent, schema, raise_on_error=True, preprocess=True) == []
    flow.validate_parameters(sent)  # the options model fills what was left empty with its defaults
