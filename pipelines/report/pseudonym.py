"""Keyed pseudonyms for exported patient identifiers.

``px_`` + the first 20 hex digits (80 bits) of HMAC-SHA256(key, patient_id as UTF-8). The key
comes from the environment variable named by ``report.pseudonymize_key_env`` (default
``TXH_PSEUDONYM_KEY``); it is never logged, written or put in an error message. The same key
always gives the same pseudonym (exports made with one key link to each other); another key
gives unrelated pseudonyms (rotate the key to unlink). Without the key a pseudonym cannot be
reversed or recomputed, even though patient ids are short and guessable: the key must be
secret and long (at least MIN_KEY_LENGTH characters; 32 random bytes, e.g.
``openssl rand -hex 32``, are recommended).

Pseudonymised data is still personal data (dates and rare combinations remain); this is a
safeguard for sharing within an agreement, not anonymisation.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from pipelines.config import Config, ConfigError

PREFIX = "px_"
HEX_DIGITS = 20
MIN_KEY_LENGTH = 16


def key_env(cfg: Config) -> str:
    return cfg.report.pseudonymize_key_env


def has_key(cfg: Config) -> bool:
    return bool(os.environ.get(key_env(cfg)))


def load_key(cfg: Config) -> bytes:
    """The pseudonymisation key, or a configuration error (exit 2) naming the variable."""
    name = key_env(cfg)
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(
            f"pseudonymisation needs a secret key in the environment variable "
            f"{name} (report.pseudonymize_key_env); it is not set"
        )
    if len(value) < MIN_KEY_LENGTH:
        raise ConfigError(
            f"the key in {name} is too short (fewer than {MIN_KEY_LENGTH} "
            "characters); use e.g. 32 random bytes in hex"
        )
    return value.encode("utf-8")


def pseudonym(patient_id: str, key: bytes) -> str:
    digest = hmac.new(key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:HEX_DIGITS]


def pseudonyms(patient_ids: list[str], key: bytes) -> dict[str, str]:
    out = {p: pseudonym(p, key) for p in patient_ids}
    if len(set(out.values())) != len(out):  # 80 bits: ~1e-12 at a million patients
        raise RuntimeError("pseudonym collision; widen HEX_DIGITS")
    return out
