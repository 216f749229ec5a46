"""The one place that builds Google clients.

Contract (documented in the README):
- STORAGE_EMULATOR_HOST (http URL)           -> Cloud Storage client on that host, anonymous.
- BIGQUERY_EMULATOR_HOST (http URL)          -> BigQuery REST client on that host, anonymous.
- BIGQUERY_STORAGE_EMULATOR_HOST (host:port) -> BigQuery Storage Read client over insecure gRPC.
- GKE_BACKUP_EMULATOR_HOST, COMPOSER_EMULATOR_HOST (host:port) -> gRPC clients over insecure channels.
Otherwise the credentials given (from a credentials block) or Application Default Credentials.
"""

from __future__ import annotations

import os
from typing import Any

import requests.adapters
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials

STORAGE_EMULATOR = "STORAGE_EMULATOR_HOST"
BIGQUERY_EMULATOR = "BIGQUERY_EMULATOR_HOST"
BIGQUERY_STORAGE_EMULATOR = "BIGQUERY_STORAGE_EMULATOR_HOST"
GKE_BACKUP_EMULATOR = "GKE_BACKUP_EMULATOR_HOST"
COMPOSER_EMULATOR = "COMPOSER_EMULATOR_HOST"
POOL_SIZE = 64

# Credentials of the settings' credentials block, set when the settings are loaded
# (blocks.settings.load_settings); None means Application Default Credentials.
_default_credentials: Any = None


def use_credentials_block(block_name: str | None) -> None:
    """Build every later client with the credentials of GcpCredentials block `block_name` (or ADC)."""
    global _default_credentials
    from blocks.credentials import load_credentials

    _default_credentials = load_credentials(block_name)


def default_credentials() -> Any:
    return _default_credentials


def storage_client(project: str, credentials: Any | None = None) -> Any:
    """A Cloud Storage client (emulator when STORAGE_EMULATOR_HOST is set)."""
    from google.cloud import storage  # type: ignore[attr-defined]

    if os.environ.get(STORAGE_EMULATOR):
        client = storage.Client(project=project, credentials=AnonymousCredentials())
    else:
        client = storage.Client(project=project, credentials=credentials or _default_credentials)
    # Backstop copies with up to 16 threads per batch; the default pool of 10 would churn connections.
    adapter = requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=POOL_SIZE)
    client._http.mount("https://", adapter)
    client._http.mount("http://", adapter)
    return client


def bigquery_client(project: str, credentials: Any | None = None, location: str | None = None) -> Any:
    """A BigQuery client (emulator when BIGQUERY_EMULATOR_HOST is set)."""
    from google.cloud import bigquery

    endpoint = os.environ.get(BIGQUERY_EMULATOR)
    if endpoint:
        return bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),
            location=location,
            client_options=ClientOptions(api_endpoint=endpoint),
        )
    return bigquery.Client(
        project=project, credentials=credentials or _default_credentials, location=location
    )


def bigquery_read_client(credentials: Any | None = None) -> Any:
    """A BigQuery Storage Read API client (insecure gRPC when BIGQUERY_STORAGE_EMULATOR_HOST is set)."""
    from google.cloud.bigquery_storage_v1 import BigQueryReadClient
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

    target = os.environ.get(BIGQUERY_STORAGE_EMULATOR)
    if target:
        import grpc

        channel = grpc.insecure_channel(target)
        return BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))
    return BigQueryReadClient(credentials=credentials or _default_credentials)


def _grpc_client(client_cls: Any, transport_cls: Any, env: str, credentials: Any | None) -> Any:
    target = os.environ.get(env)
    if target:
        import grpc

        return client_cls(transport=transport_cls(channel=grpc.insecure_channel(target)))
    return client_cls(credentials=credentials or _default_credentials)


def gke_backup_client(credentials: Any | None = None) -> Any:
    """A Backup for GKE client (insecure gRPC when GKE_BACKUP_EMULATOR_HOST is set)."""
    from google.cloud import gke_backup_v1
    from google.cloud.gke_backup_v1.services.backup_for_gke.transports import BackupForGKEGrpcTransport

    return _grpc_client(
        gke_backup_v1.BackupForGKEClient, BackupForGKEGrpcTransport, GKE_BACKUP_EMULATOR, credentials
    )


def composer_client(credentials: Any | None = None) -> Any:
    """A Cloud Composer Environments client (insecure gRPC when COMPOSER_EMULATOR_HOST is set)."""
    from google.cloud.orchestration.airflow import service_v1
    from google.cloud.orchestration.airflow.service_v1.services.environments.transports import (
        EnvironmentsGrpcTransport,
    )

    return _grpc_client(
        service_v1.EnvironmentsClient, EnvironmentsGrpcTransport, COMPOSER_EMULATOR, credentials
    )
