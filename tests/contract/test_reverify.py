"""Kept backups stay restorable or are never chosen: re-verification finds a flipped byte in an old
backup (every component), and a backup whose data outside the bucket expired is never chosen
(the components that keep data outside it). Held over the subjects of tests/contract/conftest.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from backstop.core.errors import NotFound
from tasks.catalog import index
from tasks.engine import lifecycle, restore
from tasks.engine.protocol import RestoreRequest
from tasks.engine.reverify import reverify
from tasks.engine.secondary import copy_to_secondary
from tasks.storage.bucket import open_store
from tests.contract.conftest import expire_outside_data
from tests.contract.test_contract import backed_up, flip_one_byte

pytestmark = pytest.mark.integration


def result_of(report: Any, component: str, source: str, where: str = "primary") -> Any:
    (result,) = [r for r in report.sources if (r.component, r.source, r.where) == (component, source, where)]
    return result


def test_reverification_finds_a_flipped_byte_in_an_old_backup(
    subject: Any, settings: Any, store: Any
) -> None:
    source, _, old = backed_up(subject, settings, store)
    subject.change(source)
    new = lifecycle.backup(subject.component, settings, source, store=store)
    newer_keys = {e.stored_key for e in store.iter_entries(new)}
    victim = next(e for e in store.iter_entries(old) if e.stored_key not in newer_keys)
    flip_one_byte(store, victim.stored_key)

    report = reverify(settings, store, [subject.component], share=1.0)
    result = result_of(report, subject.component, source)
    assert list(result.damaged) == [old.backup_id] and not result.expired
    assert any(repr(victim.name) in p for p in result.damaged[old.backup_id])
    assert store.read_manifest(old.path).status == "invalid"
    assert store.read_manifest(new.path).status == "validated"
    listed = {h.backup_id: h.status for h in index.read_headers(store, subject.component, source)}
    assert listed == {old.backup_id: "invalid", new.backup_id: "validated"}

    # A restore as of the old backup's time no longer picks it, and says there is none.
    target = subject.new_target(source)
    request = RestoreRequest(source=source, target=target, before=old.started_at.isoformat())
    with pytest.raises(NotFound, match="no validated backup"):
        restore.restore(subject.component, settings, request, store=store)

    # The next run finds the same backup already marked: nothing new to report.
    again = result_of(reverify(settings, store, [subject.component], share=1.0), subject.component, source)
    assert again.backups == 1 and not again.found


@pytest.mark.parametrize("subject", ["gke", "bigquery", "composer"], indirect=True)
def test_backup_whose_outside_data_expired_is_never_chosen(subject: Any, settings: Any, store: Any) -> None:
    options = {"bigquery": {"method": "snapshot"}, "composer": {"snapshot": True}}.get(subject.component)
    source = subject.seed()
    old = lifecycle.backup(subject.component, settings, source, options=options, store=store)
    secondary = open_store(settings, secondary=True)
    assert copy_to_secondary(store, secondary, old).secondary.ok  # type: ignore[union-attr]
    subject.change(source)
    before = subject.state(source)
    new = lifecycle.backup(subject.component, settings, source, options=options, store=store)
    assert (old.status, new.status) == ("validated", "validated")
    expire_outside_data(subject, store.with_entries(old))

    result = result_of(reverify(settings, store, [subject.component], share=1.0), subject.component, source)
    assert list(result.expired) == [old.backup_id] and not result.damaged
    assert store.read_manifest(old.path).status == "expired"
    assert secondary.read_manifest(old.path).status == "expired"  # its copy points at the same gone data
    assert not result_of(
        reverify(settings, store, [subject.component], share=1.0), subject.component, source, "secondary"
    ).found

    moment = old.started_at.isoformat()
    for request in (  # neither the primary nor the secondary copy is chosen
        RestoreRequest(source=source, target=subject.new_target(source), before=moment),
        RestoreRequest(source=source, target=subject.new_target(source), before=moment, skip_damaged=True),
    ):
        with pytest.raises(NotFound):
            restore.restore(subject.component, settings, request, store=store)

    target = subject.new_target(source)
    report = restore.restore(
        subject.component, settings, RestoreRequest(source=source, target=target), store=store
    )
    assert report.backup_id == new.backup_id and subject.state(target) == before
