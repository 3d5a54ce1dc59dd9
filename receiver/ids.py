"""Identifiers: a short prefix plus 26 sortable characters (48-bit milliseconds, 80 random bits)."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def new_id(prefix: str, *, now_ms: int | None = None) -> str:
    """A new id such as ``job_01hx3…``: ``prefix`` + ``_`` + 26 characters, time-ordered.

    :param prefix: ``job``, ``msg`` (events: the ``webhook-id``), ``sub``, ``dlv``.
    :param now_ms: milliseconds since the epoch (tests pass it; default: the clock).
    """
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
