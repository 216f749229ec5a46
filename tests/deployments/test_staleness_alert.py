"""The staleness alert's window. The end-to-end check (a short RPO, `backstop deploy`, the real Prefect
server's proactive trigger posting to the local alert receiver, or staying quiet after a validation) is
`test_staleness_alert_fires_without_a_validated_backup_and_not_with_one` in test_platform_cli.py,
on the platform the tests there share.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_an_rpo_under_prefects_shortest_proactive_window_still_deploys() -> None:
    from uuid import uuid4

    from deployments.automations import staleness_automation

    automation = staleness_automation("configs", ["configs-validate"], 0.001, uuid4())  # 3.6 s
    assert automation.trigger.within == timedelta(seconds=10)  # Prefect refuses less
