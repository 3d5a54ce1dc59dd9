"""The one bearer check: ``/api/*``, ``/metrics``, the worker's metrics endpoint and the
dashboard's ``Authorization`` header all compare ``ADMIN_TOKEN`` here (:func:`token_matches`
is the comparison itself, for a token typed into a form)."""

from __future__ import annotations

import hashlib
import hmac


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "replace")).digest()


def token_matches(given: str, token: str) -> bool:
    """True when ``given`` (whitespace around it ignored) is ``token``, compared as SHA-256
    digests in constant time (equal lengths: not even the token's length leaks). An empty
    ``token`` (the admin door is off) matches nothing. For a token typed into a form."""
    return bool(token) and hmac.compare_digest(_digest(given.strip()), _digest(token))


def bearer_matches(header: str | None, token: str) -> bool:
    """True when ``header`` (an ``Authorization`` value) is ``Bearer <token>``.

    The scheme is case-insensitive and whitespace around the token is ignored. The tokens are
    compared as SHA-256 digests in constant time: equal lengths, so not even the token's
    length leaks. An empty ``token`` (the admin door is off) matches nothing.
    """
    if not token or not header:
        return False
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        _digest(given.strip()), _digest(token)
    )
