"""Which Cloud Storage 403s mean "kept by the bucket" (a hold, a retention policy) and which are failures."""

import pytest
from google.api_core import exceptions as gexc

from tasks.storage.objects import kept_reason

pytestmark = pytest.mark.unit


def test_holds_and_retention_policies_are_kept_and_a_plain_permission_error_is_not() -> None:
    hold = gexc.Forbidden(
        "Object 'm' is under active Temporary hold and cannot be deleted, overwritten or archived until hold is removed."
    )
    assert kept_reason(hold) == "temporary hold"
    legal = gexc.Forbidden(
        "Object 'm' is under active Event-Based hold and cannot be deleted, overwritten or archived"
    )
    assert kept_reason(legal) == "event-based hold"
    retained = gexc.Forbidden(
        "Object 'm' is subject to bucket's retention policy or object retention and cannot be deleted or "
        "overwritten until 2026-12-06T10:00:00Z"
    )
    assert kept_reason(retained) == "bucket retention policy until 2026-12-06T10:00:00Z"
    reworded = gexc.Forbidden("Object 'm' is protected", errors=[{"reason": "retentionPolicyNotMet"}])
    assert kept_reason(reworded) == "object hold or retention policy"
    denied = gexc.Forbidden("x does not have storage.objects.delete access", errors=[{"reason": "forbidden"}])
    assert kept_reason(denied) is None
