"""What a user would write instead of Backstop for one BigQuery table (the bench's reference).

    python bench/plain_bigquery.py backup PROJECT DATASET TABLE BUCKET KEY
    python bench/plain_bigquery.py restore PROJECT BUCKET KEY SOURCE_DATASET.TABLE TARGET_DATASET TABLE

backup: Storage Read API -> pyarrow -> one Parquet file (zstd, as Backstop writes) -> upload to the bucket.
restore: download -> create the table with the source's schema -> load job. No hashes, no counts, no
manifest. It imports nothing of Backstop: the endpoints come from the emulator variables
(BIGQUERY_EMULATOR_HOST, BIGQUERY_STORAGE_EMULATOR_HOST, STORAGE_EMULATOR_HOST), as a user would
point a script at the local platform.
"""

from __future__ import annotations

import os
import sys
import tempfile

import grpc
import pyarrow.parquet as pq
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, storage
from google.cloud.bigquery_storage_v1 import BigQueryReadClient
from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport


def clients(project: str) -> tuple[bigquery.Client, BigQueryReadClient, storage.Client]:
    bq = bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": os.environ["BIGQUERY_EMULATOR_HOST"]},
    )
    channel = grpc.insecure_channel(
        os.environ["BIGQUERY_STORAGE_EMULATOR_HOST"], options=[("grpc.max_receive_message_length", -1)]
    )
    read = BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))
    gcs = storage.Client(project=project, credentials=AnonymousCredentials())
    return bq, read, gcs


def backup(project: str, dataset: str, table: str, bucket: str, key: str) -> None:
    bq, read, gcs = clients(project)
    data = bq.list_rows(f"{project}.{dataset}.{table}").to_arrow(bqstorage_client=read)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "table.parquet")
        pq.write_table(data, path, compression="zstd")
        gcs.bucket(bucket).blob(key).upload_from_filename(path)
    print(data.num_rows)


def restore(project: str, bucket: str, key: str, source: str, dataset: str, table: str) -> None:
    bq, _, gcs = clients(project)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "table.parquet")
        gcs.bucket(bucket).blob(key).download_to_filename(path)
        bq.create_dataset(f"{project}.{dataset}", exists_ok=True)
        schema = bq.get_table(f"{project}.{source}").schema
        bq.create_table(bigquery.Table(f"{project}.{dataset}.{table}", schema=schema))
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET)
        with open(path, "rb") as handle:
            job = bq.load_table_from_file(handle, f"{project}.{dataset}.{table}", job_config=config)
        job.result()
    print(job.output_rows)


if __name__ == "__main__":
    verb, *args = sys.argv[1:]
    {"backup": backup, "restore": restore}[verb](*args)
