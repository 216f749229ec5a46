"""The local BigQuery emulator lets go of a Storage Read session once each of its streams has been
read (localdev/servers/bigquery_emulator.py): bqemulator kept every one, with its copy of the table,
and slowed as they piled up. Seen through the Storage Read API, as a client sees it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from google.api_core.exceptions import NotFound
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import types

from blocks.clients import bigquery_read_client
from localdev.platform import PROJECT
from localdev.servers.bigquery_emulator import GRACE_SECONDS
from tests.conftest import unique


def _session(read: Any, dataset: str) -> Any:
    request = types.ReadSession(
        table=f"projects/{PROJECT}/datasets/{dataset}/tables/t", data_format=types.DataFormat.ARROW
    )
    return read.create_read_session(parent=f"projects/{PROJECT}", read_session=request, max_stream_count=1)


def _rows(read: Any, stream: str) -> int:
    return sum(response.row_count for response in read.read_rows(stream))


@pytest.fixture
def table(bq: Any) -> str:
    dataset = unique("bqemu").replace("-", "_")
    bq.create_dataset(f"{PROJECT}.{dataset}")
    bq.create_table(bigquery.Table(f"{PROJECT}.{dataset}.t", schema=[bigquery.SchemaField("n", "INT64")]))
    bq.query(f"INSERT INTO `{PROJECT}.{dataset}.t` (n) VALUES (1), (2), (3)").result()
    return dataset


def test_a_read_session_goes_once_read_and_an_unread_one_stays(table: str) -> None:
    read = bigquery_read_client()
    done, unread = _session(read, table), _session(read, table)
    assert _rows(read, done.streams[0].name) == 3
    time.sleep(GRACE_SECONDS + 0.5)
    _session(read, table)  # sessions are let go when one is made

    with pytest.raises(NotFound):
        _rows(read, done.streams[0].name)
    assert _rows(read, unread.streams[0].name) == 3  # never read: kept (until BigQuery's 6 hours)


def test_a_session_read_just_now_can_still_be_read(table: str) -> None:
    read = bigquery_read_client()
    session = _session(read, table)
    assert _rows(read, session.streams[0].name) == 3
    _session(read, table)
    assert _rows(read, session.streams[0].name) == 3
