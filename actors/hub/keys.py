"""API keys: minting, hashing and checking. Pure functions; :mod:`actors.hub.key_admin` stores keys.

A key looks like ``mah_<key id>_<secret>``: the key id (12 hex digits) is
public and names the key in listings and logs; the secret is 256 random bits
from :mod:`secrets` (never the runtime's seeded streams: a key must not be
reproducible from a seed).

Only a SHA-256 of the whole key is stored. A fast hash is right here, unlike
for passwords: slow hashes (bcrypt, scrypt, argon2) exist to make guessing
low-entropy secrets expensive, and nobody can enumerate 2^256 secrets at any
speed. A fast hash keeps the check on every request at microseconds. The
stored and presented hashes are compared with :func:`hmac.compare_digest`, in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Final

import attrs

__all__ = [
    "KeyInfo",
    "StoredKey",
    "hash_key",
    "key_id_of",
    "new_key",
    "validate_tenant",
    "verify_key",
]

KEY_PREFIX: Final = "mah"
_KEY_RE: Final = re.compile(r"mah_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_TENANT_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


@attrs.frozen
class StoredKey:
    """A key row as the hub's store holds it (the hash, never the key)."""

    key_id: str
    tenant: str
    key_hash: str
    revoked: bool


@attrs.frozen
class KeyInfo:
    """A key as ``memory-actors hub keys list`` shows it."""

    key_id: str
    tenant: str
    created_at: float
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def validate_tenant(tenant: object) -> str:
    """Return a valid tenant name (1-64 characters from letters, digits and ``._:-``), or raise."""
    if not isinstance(tenant, str) or not _TENANT_RE.fullmatch(tenant):
        raise ValueError(
            f"tenant {str(tenant)[:80]!r} is invalid: use 1-64 characters from letters, "
            "digits and . _ : -, starting with a letter or digit"
        )
    return tenant


def new_key() -> tuple[str, str]:
    """Mint a key: ``(key_id, plaintext)``. The plaintext is shown once and never stored."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(plaintext: str) -> str | None:
    """The key id inside a presented key, or None if it is not shaped like one of ours."""
    match = _KEY_RE.fullmatch(plaintext)
    return match.group(1) if match else None


def hash_key(plaintext: str) -> str:
    """SHA-256 (hex) of the whole key: what the store keeps."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def verify_key(plaintext: str, stored_hash: str) -> bool:
    """Whether ``plaintext`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(hash_key(plaintext), stored_hash)
