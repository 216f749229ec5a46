"""The one place that builds Google clients.

Contract (documented in the README):
- STORAGE_EMULATOR_HOST (http URL)           -> Cloud Storage client on that host, anonymous.
- BIGQUERY_EMULATOR_HOST (http URL)          -> BigQuery REST client on that host, anonymous.
- BIGQUERY_STORAGE_EMULATOR_HOST (host:port) -> BigQuery Storage Read client over insecure gRPC.
- GKE_BACKUP_EMULATOR_HOST, COMPOSER_EMULATOR_HOST (host:port) -> gRPC clients over insecure channels.
- KUBERNETES_EMULATOR_HOST (http URL)        -> a GKE cluster's Kubernetes API at <url>/<cluster full name>.
Otherwise the credentials given, else those of the `GcpCredentials` block named by
BACKSTOP_CREDENTIALS_BLOCK (each deployment of prefect.yaml names its job's service account there:
deployments/iam/), else Application Default Credentials.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import requests.adapters
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials

# The variables that point the clients at emulators / local servers (names Backstop reads), and
# what each stands for; a work pool's job environment carries them and EXTRA_JOB_ENV.
EMULATOR_ENV = {
    "STORAGE_EMULATOR_HOST": "Cloud Storage emulator",
    "BIGQUERY_EMULATOR_HOST": "BigQuery emulator",
    "BIGQUERY_STORAGE_EMULATOR_HOST": "BigQuery Storage emulator",
    "GKE_BACKUP_EMULATOR_HOST": "local Backup for GKE server",
    "COMPOSER_EMULATOR_HOST": "local Composer server",
    "KUBERNETES_EMULATOR_HOST": "local Kubernetes API of the GKE clusters",
    "AIRFLOW_API_URL": "local Airflow server",
}
# The components each emulated service serves (Cloud Storage holds the backups: every one needs it).
EMULATOR_COMPONENTS = {
    "STORAGE_EMULATOR_HOST": ("gcs", "configs", "bigquery", "composer", "gke"),
    "BIGQUERY_EMULATOR_HOST": ("bigquery",),
    "BIGQUERY_STORAGE_EMULATOR_HOST": ("bigquery",),
    "GKE_BACKUP_EMULATOR_HOST": ("gke",),
    "COMPOSER_EMULATOR_HOST": ("composer",),
    "AIRFLOW_API_URL": ("composer",),
}
# Passed to flow runs with the endpoints: where bqemulator's extract/load jobs keep files.
EXTRA_JOB_ENV = ("BQEMU_GCS_LOCAL_ROOT",)


STORAGE_EMULATOR = "STORAGE_EMULATOR_HOST"
BIGQUERY_EMULATOR = "BIGQUERY_EMULATOR_HOST"
BIGQUERY_STORAGE_EMULATOR = "BIGQUERY_STORAGE_EMULATOR_HOST"
GKE_BACKUP_EMULATOR = "GKE_BACKUP_EMULATOR_HOST"
COMPOSER_EMULATOR = "COMPOSER_EMULATOR_HOST"
KUBERNETES_EMULATOR = "KUBERNETES_EMULATOR_HOST"
CREDENTIALS_BLOCK = "BACKSTOP_CREDENTIALS_BLOCK"
POOL_SIZE = 64
# The client libraries the functions below import when first called (a command that needs none of
# BigQuery's does not pay for it); `backstop warm` imports them all once (backstop_cli/warm.py).
LIBRARIES = (
    "google.cloud.storage",
    "google.cloud.bigquery",
    "google.cloud.bigquery_storage_v1",
    "google.cloud.bigquery_storage_v1.services.big_query_read.transports",
    "google.cloud.gke_backup_v1",
    "google.cloud.gke_backup_v1.services.backup_for_gke.transports",
    "google.cloud.orchestration.airflow.service_v1",
    "google.cloud.orchestration.airflow.service_v1.services.environments.transports",
    "grpc",
)

# Credentials of the settings' credentials block, set when the settings are loaded
# (blocks.settings.load_settings); None means Application Default Credentials.
_default_credentials: Any = None
_default_block: str | None = None


def use_credentials_block(block_name: str | None) -> None:
    """Build every later client with the credentials of GcpCredentials block `block_name` (or ADC)."""
    global _default_credentials, _default_block
    from blocks.credentials import load_credentials

    _default_credentials = load_credentials(block_name)
    _default_block = block_name


def credentials_block_in_use() -> str | None:
    """The credentials block this process builds clients with: the job's (BACKSTOP_CREDENTIALS_BLOCK),
    else the settings' credentials_block; None for Application Default Credentials."""
    return os.environ.get(CREDENTIALS_BLOCK) or _default_block


def adopt_credentials_block(block_name: str | None) -> None:
    """Build this process's clients as another process does (a Dask worker running a unit of a flow
    run started elsewhere): with `block_name`, that process's `credentials_block_in_use()`."""
    if block_name != credentials_block_in_use():
        use_credentials_block(block_name)


def default_credentials() -> Any:
    return _default_credentials


@functools.lru_cache(maxsize=8)
def _block_credentials(block: str) -> Any | None:
    from backstop.core.errors import ConfigError
    from blocks.credentials import load_credentials

    try:
        return load_credentials(block)
    except ConfigError as exc:  # not created yet: the job keeps working, with the worker's own rights
        logging.getLogger(__name__).warning(
            "%s: using Application Default Credentials (see deployments/iam/README.md)", exc
        )
        return None


def job_credentials(credentials: Any | None = None) -> Any | None:
    """`credentials`, else the job's credentials block (BACKSTOP_CREDENTIALS_BLOCK, set per deployment),
    else the settings' credentials_block, else None (Application Default Credentials)."""
    if credentials is not None:
        return credentials
    block = os.environ.get(CREDENTIALS_BLOCK)
    return _block_credentials(block) if block else _default_credentials


def storage_client(project: str, credentials: Any | None = None) -> Any:
    """A Cloud Storage client (emulator when STORAGE_EMULATOR_HOST is set)."""
    from google.cloud import storage  # type: ignore[attr-defined]

    if os.environ.get(STORAGE_EMULATOR):
        local = credentials if isinstance(credentials, LocalPrincipalCredentials) else AnonymousCredentials()
        email = getattr(credentials, "service_account_email", None)
        if credentials is not None and not isinstance(credentials, LocalPrincipalCredentials) and email:
            local = LocalPrincipalCredentials(f"serviceAccount:{email}")  # the key's account, named locally
        client = storage.Client(project=project, credentials=local)
    else:
        client = storage.Client(project=project, credentials=job_credentials(credentials))
    # Backstop copies with up to 16 threads per batch; the default pool of 10 would churn connections.
    adapter = requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=POOL_SIZE)
    client._http.mount("https://", adapter)
    client._http.mount("http://", adapter)
    environment_once(client._http)
    return client


def environment_once(session: requests.Session) -> None:
    """Read the HTTP settings of the environment once for `session`, not once per request.

    With `trust_env` requests looks up proxies (the environment's, or the system's on macOS /
    Windows), a netrc file and the CA bundle variables on every request: ~18% of a copy's client
    CPU, measured here. Where no proxy and no netrc file is set, the only thing it can find is the CA
    bundle (REQUESTS_CA_BUNDLE, else CURL_CA_BUNDLE), which is taken now: every request then goes
    out exactly as before. Proxies or a netrc file keep requests' per-request lookups (a proxy
    applies per URL, through no_proxy)."""
    import urllib.request

    netrc = os.environ.get("NETRC") or any(
        os.path.exists(os.path.expanduser(f"~/{name}")) for name in (".netrc", "_netrc")
    )
    if urllib.request.getproxies() or netrc:
        return
    if session.verify is True:
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False


class LocalPrincipalCredentials(AnonymousCredentials):
    """Local servers only: the bearer token names the principal (`serviceAccount:x@y`), the
    convention of localdev/servers/gcs_policy_server.py for answering testIamPermissions as someone."""

    def __init__(self, principal: str) -> None:
        super().__init__()
        self.token = principal

    def apply(self, headers: dict[str, str], token: str | None = None) -> None:
        headers["authorization"] = f"Bearer {self.token}"

    def before_request(self, request: Any, method: str, url: str, headers: dict[str, str]) -> None:
        self.apply(headers)


def storage_client_as(project: str, service_account: str, credentials: Any | None = None) -> Any:
    """A Cloud Storage client acting as `service_account` (an email).

    On Google Cloud it impersonates the account (the caller needs roles/iam.serviceAccountTokenCreator
    on it); with STORAGE_EMULATOR_HOST it names the account to the local server.
    """
    if os.environ.get(STORAGE_EMULATOR):
        return storage_client(project, LocalPrincipalCredentials(f"serviceAccount:{service_account}"))
    import google.auth
    from google.auth import impersonated_credentials

    source = job_credentials(credentials) or google.auth.default()[0]
    target = impersonated_credentials.Credentials(
        source_credentials=source,
        target_principal=service_account,
        target_scopes=["https://www.googleapis.com/auth/devstorage.read_only"],
    )
    return storage_client(project, target)


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
    return bigquery.Client(project=project, credentials=job_credentials(credentials), location=location)


def bigquery_read_client(credentials: Any | None = None) -> Any:
    """A BigQuery Storage Read API client (insecure gRPC when BIGQUERY_STORAGE_EMULATOR_HOST is set)."""
    from google.cloud.bigquery_storage_v1 import BigQueryReadClient
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

    target = os.environ.get(BIGQUERY_STORAGE_EMULATOR)
    if target:
        import grpc

        # No receive limit, as the library's own channel: gRPC's default of 4 MB is less than one
        # read response of a wide table (the emulator sends 65,536-row batches).
        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        channel = grpc.insecure_channel(target, options=options)
        return BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))
    return BigQueryReadClient(credentials=job_credentials(credentials))


def _grpc_client(client_cls: Any, transport_cls: Any, env: str, credentials: Any | None) -> Any:
    target = os.environ.get(env)
    if target:
        import grpc

        return client_cls(transport=transport_cls(channel=grpc.insecure_channel(target)))
    return client_cls(credentials=job_credentials(credentials))


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


def kubernetes_api(cluster: str, credentials: Any | None = None) -> tuple[str, Any]:
    """(API server URL, requests session) of GKE cluster `cluster` (projects/P/locations/L/clusters/C).

    With KUBERNETES_EMULATOR_HOST: the local model's API for that cluster. Otherwise the cluster's
    endpoint and CA certificate from the GKE API, and a session sending the job's Google token
    (GKE accepts it for the Kubernetes API).
    """
    local = os.environ.get(KUBERNETES_EMULATOR)
    if local:
        import requests

        return f"{local.rstrip('/')}/{cluster}", requests.Session()
    import base64
    import tempfile

    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    scopes = ["https://www.googleapis.com/auth/cloud-platform"]
    session = AuthorizedSession(job_credentials(credentials) or google.auth.default(scopes=scopes)[0])
    answer = session.get(f"https://container.googleapis.com/v1/{cluster}", timeout=30)
    answer.raise_for_status()
    info = answer.json()
    with tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False) as ca:
        ca.write(base64.b64decode(info["masterAuth"]["clusterCaCertificate"]))
    session.verify = ca.name
    return f"https://{info['endpoint']}", session
