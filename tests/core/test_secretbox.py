"""backstop.core.secretbox: secrets leave as tokens or references and come back only with the key."""

from __future__ import annotations

import json

import pytest

from backstop.core.errors import ConfigError, ValidationFailed
from backstop.core.secretbox import (
    DEFAULT_SECRET_PATTERNS,
    SecretBox,
    count_protected,
    is_secret_name,
    new_key,
    protect_connection,
    protect_variable,
    reveal,
)

pytestmark = pytest.mark.unit


def test_encrypted_variable_round_trips_with_the_key_only() -> None:
    box = SecretBox(new_key())
    stored = protect_variable(
        {"key": "DB_Password", "value": "hunter2"}, DEFAULT_SECRET_PATTERNS, "encrypt", box, "r"
    )
    assert "hunter2" not in json.dumps(stored)
    assert reveal(stored, box, "variable")[0] == {"key": "DB_Password", "value": "hunter2"}
    with pytest.raises(ValidationFailed, match="variable field 'value': cannot decrypt"):
        reveal(stored, SecretBox(new_key()), "variable")
    with pytest.raises(ConfigError, match="no encryption key"):
        reveal(stored, None, "variable")


def test_plain_variables_stay_plain_and_passphrases_work() -> None:
    box = SecretBox("a long passphrase, not a Fernet key")
    assert (
        protect_variable({"key": "env", "value": "prod"}, DEFAULT_SECRET_PATTERNS, "encrypt", box, "r")[
            "value"
        ]
        == "prod"
    )
    assert box.decrypt(box.encrypt("x")) == "x"
    with pytest.raises(ConfigError):
        SecretBox("  ")


def test_reference_mode_keeps_no_value() -> None:
    conn = {
        "connection_id": "db",
        "conn_type": "postgres",
        "password": "pw",
        "extra": '{"token": "t"}',
        "host": "h",
    }
    stored = protect_connection(conn, "reference", None, "composer/env")
    assert stored["password"] == {"$secret_ref": "composer/env/connections/db/password"}
    assert "pw" not in json.dumps(stored) and '"t"' not in json.dumps(stored)
    plain, unresolved = reveal(stored, None, "connection")
    assert plain == {"connection_id": "db", "conn_type": "postgres", "host": "h"}
    assert unresolved == ["password", "extra"]
    assert count_protected([stored]) == 2


def test_secret_names() -> None:
    assert is_secret_name("API_TOKEN", DEFAULT_SECRET_PATTERNS)
    assert is_secret_name("gcp_credentials_json", DEFAULT_SECRET_PATTERNS)
    assert not is_secret_name("environment", DEFAULT_SECRET_PATTERNS)
