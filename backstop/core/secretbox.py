"""Keep secret values out of backups: encrypt them with a key, or replace them by references.

Pure: no Prefect, no I/O. A protected value is a one-key JSON object, so a backup file stays plain
JSON and a reader sees at once which values were protected:

    {"$encrypted": "<Fernet token>"}      (secrets_mode "encrypt": restorable with the key)
    {"$secret_ref": "<where it lives>"}   (secrets_mode "reference": the backup holds no value at all)

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) authenticates every token, so a wrong key or an
edited backup fails loudly instead of restoring garbage.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
from typing import Any, Literal

from cryptography.fernet import Fernet, InvalidToken

from backstop.core.errors import ConfigError, ValidationFailed

ENCRYPTED = "$encrypted"
SECRET_REF = "$secret_ref"
Mode = Literal["encrypt", "reference"]

DEFAULT_SECRET_PATTERNS = ["*password*", "*secret*", "*token*", "*key*", "*credential*"]
# Connection fields that may carry credentials (Airflow's REST API never returns `password`, but
# other sources of connection records may).
SECRET_CONNECTION_FIELDS = ("password", "extra")


def new_key() -> str:
    """A fresh random key (URL-safe base64 of 32 bytes) to keep in a Prefect Secret block."""
    return Fernet.generate_key().decode()


def key_id(key: str) -> str:
    """A short, non-secret fingerprint of `key`, recorded in manifests to tell keys apart."""
    return hashlib.sha256(b"backstop-secretbox:" + key.encode()).hexdigest()[:12]


class SecretBox:
    """Encrypt and decrypt strings with one key.

    Any non-empty string is accepted as a key: a Fernet key is used as is, anything else is
    stretched with PBKDF2-HMAC-SHA256 (a passphrase kept in a Secret block).
    """

    def __init__(self, key: str) -> None:
        if not key or not key.strip():
            raise ConfigError("the encryption key is empty")
        try:
            raw = base64.urlsafe_b64decode(key.encode())
            fernet_key = key.encode() if len(raw) == 32 else b""
        except ValueError:
            fernet_key = b""
        if not fernet_key:
            derived = hashlib.pbkdf2_hmac("sha256", key.encode(), b"backstop-secretbox", 200_000)
            fernet_key = base64.urlsafe_b64encode(derived)
        self._fernet = Fernet(fernet_key)
        self.key_id = key_id(key)

    def encrypt(self, value: str) -> dict[str, str]:
        """`value` as {"$encrypted": token}."""
        return {ENCRYPTED: self._fernet.encrypt(value.encode()).decode()}

    def decrypt(self, sealed: dict[str, str], where: str = "value") -> str:
        """The plain text of {"$encrypted": token}; ValidationFailed names `where` on a wrong key."""
        try:
            return self._fernet.decrypt(sealed[ENCRYPTED].encode()).decode()
        except (InvalidToken, KeyError, ValueError):
            raise ValidationFailed(f"{where}: cannot decrypt (wrong key or damaged backup)") from None


def is_secret_name(name: str, patterns: list[str]) -> bool:
    """True when `name` matches one of the glob `patterns`, case-insensitively."""
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in patterns)


def is_protected(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and (ENCRYPTED in value or SECRET_REF in value)


def protect(value: str, mode: Mode, box: SecretBox | None, ref: str) -> dict[str, str]:
    """Replace a secret `value` by an encrypted token or by a reference `ref`."""
    if mode == "reference":
        return {SECRET_REF: ref}
    if box is None:
        raise ConfigError("secrets_mode is 'encrypt' but no encryption key was given")
    return box.encrypt(value)


def protect_variable(
    variable: dict[str, Any], patterns: list[str], mode: Mode, box: SecretBox | None, ref: str
) -> dict[str, Any]:
    """A copy of an Airflow variable with its value protected when its key looks secret."""
    out = dict(variable)
    if is_secret_name(str(variable.get("key", "")), patterns) and isinstance(out.get("value"), str):
        out["value"] = protect(out["value"], mode, box, f"{ref}/variables/{variable['key']}")
    return out


def protect_connection(
    connection: dict[str, Any], mode: Mode, box: SecretBox | None, ref: str
) -> dict[str, Any]:
    """A copy of an Airflow connection with its password and extra protected."""
    out = dict(connection)
    for field in SECRET_CONNECTION_FIELDS:
        if isinstance(out.get(field), str) and out[field]:
            out[field] = protect(
                out[field], mode, box, f"{ref}/connections/{connection['connection_id']}/{field}"
            )
    return out


def reveal(record: dict[str, Any], box: SecretBox | None, where: str) -> tuple[dict[str, Any], list[str]]:
    """Decrypt the protected fields of `record`.

    Returns the record with plain values and the names of fields left out because they are
    references (the backup never held their value). An encrypted field without a key raises
    ConfigError.
    """
    out: dict[str, Any] = {}
    unresolved: list[str] = []
    for field, value in record.items():
        if not is_protected(value):
            out[field] = value
        elif SECRET_REF in value:
            unresolved.append(field)
        elif box is None:
            raise ConfigError(f"{where}: field {field!r} is encrypted and no encryption key was given")
        else:
            out[field] = box.decrypt(value, f"{where} field {field!r}")
    return out, unresolved


def count_protected(records: list[dict[str, Any]]) -> int:
    """How many field values in `records` are encrypted or references."""
    return sum(1 for record in records for value in record.values() if is_protected(value))
