"""Signed ``replyRef`` tokens: our proof that a useapi.net callback is about a task we created.

useapi.net's callbacks carry no vendor signature, but they echo the ``replyRef`` we sent with the
create request (useapi.net docs: POST /v1/runwayml/gen3turbo/create, ``replyRef``: "stored and
returned along with this Runway task response / result", maximum length 1024 characters). We put
an ``itsdangerous`` token there: it names our job, carries a little metadata and a timestamp,
and is signed with our secret key, so a callback whose ``replyRef`` verifies came from a task we
started. Verify first, then trust the rest of the body.

Errors::

    ReplyRefError                base of verification errors
    └── ReplyRefInvalid          missing, malformed, bad signature, unknown key, tampered,
        │                        payload of the wrong shape
        └── ReplyRefExpired      signature good but older than max_age (or dated in the future)
    ReplyRefTooLong (ValueError) raised by sign(): the token would exceed 1024 characters
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import BadData, URLSafeTimedSerializer

__all__ = [
    "MAX_REPLY_REF_LENGTH",
    "ReplyRefClaims",
    "ReplyRefError",
    "ReplyRefExpired",
    "ReplyRefInvalid",
    "ReplyRefSigner",
    "ReplyRefTooLong",
]

#: Longest ``replyRef`` the vendor stores, in characters (useapi.net docs:
#: POST /v1/runwayml/gen3turbo/create, "replyRef … Maximum length 1024 characters").
MAX_REPLY_REF_LENGTH = 1024

#: How far in the future a token's timestamp may lie (clock skew between our processes), seconds.
ALLOWED_CLOCK_SKEW_SECONDS = 300.0

# itsdangerous' URL-safe tokens use only the base64url alphabet plus "." as separator.
_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_\-.]+")


@dataclass(frozen=True)
class ReplyRefClaims:
    """What a verified ``replyRef`` says.

    Attributes:
        job_id: our job id, a non-empty str.
        metadata: the JSON object attached at signing (``{}`` when none); str keys, JSON values.
        issued_at: when the token was signed, an aware UTC datetime (one-second resolution).
    """

    job_id: str
    metadata: dict[str, Any]
    issued_at: datetime


class ReplyRefError(Exception):
    """Base of the errors raised when a ``replyRef`` does not verify."""


class ReplyRefInvalid(ReplyRefError):
    """The ``replyRef`` is missing, not a string, empty, longer than 1024 characters, malformed,
    signed with an unknown key or another salt, tampered with, or its signed payload does not
    have the expected shape. A callback carrying it must change nothing."""


class ReplyRefExpired(ReplyRefInvalid):
    """The signature is good but the token is older than ``max_age`` (or dated more than
    ``ALLOWED_CLOCK_SKEW_SECONDS`` in the future).

    Attributes:
        issued_at: when the token was signed (aware UTC).
    """

    def __init__(self, message: str, *, issued_at: datetime) -> None:
        super().__init__(message)
        self.issued_at = issued_at


class ReplyRefTooLong(ValueError):
    """Raised by :meth:`ReplyRefSigner.sign` when the token would exceed the vendor's limit of
    1024 characters; attach less metadata. Not a :class:`ReplyRefInvalid`.

    Attributes:
        length: the token's length in characters.
    """

    def __init__(self, message: str, *, length: int) -> None:
        super().__init__(message)
        self.length = length


class ReplyRefSigner:
    """Signs and verifies ``replyRef`` tokens with ``itsdangerous.URLSafeTimedSerializer``.

    Token: ``<payload>.<timestamp>.<signature>``, URL-safe (``A-Z a-z 0-9 _ - .``), so it needs no
    escaping in JSON or a URL. The payload is compact JSON ``{"j": job_id, "m": metadata}``
    ("m" omitted when empty), zlib-compressed by itsdangerous when that is shorter (such
    payloads start with "."), then base64url-encoded. The signature is HMAC-SHA1 over a key
    derived from the secret key and ``salt``.

    Key rotation: our settings list keys newest first ("first signs, all verify"), while
    itsdangerous signs with the LAST key of its list and tries all of them, newest (last)
    first (checked against itsdangerous 2.2 ``Signer.secret_key`` / ``verify_signature``); the
    list is therefore handed over reversed.

    Args:
        secret_keys: the keys, the signing key first; empty strings are ignored.
        salt: separates these tokens from any other use of the same keys.

    Raises:
        ValueError: when no non-empty key is given, or ``salt`` is empty.
    """

    def __init__(
        self, secret_keys: Sequence[str], *, salt: str = "runway-relay.replyref.v1"
    ) -> None:
        if isinstance(secret_keys, str):
            raise ValueError("secret_keys must be a sequence of keys, not a single string")
        keys = [key for key in secret_keys if isinstance(key, str) and key]
        if not keys:
            raise ValueError("ReplyRefSigner needs at least one non-empty secret key")
        if not salt:
            raise ValueError("salt must not be empty")
        self._serializer = URLSafeTimedSerializer(list(reversed(keys)), salt=salt)

    def sign(self, job_id: str, metadata: Mapping[str, Any] | None = None) -> str:
        """Create a token for ``job_id`` with optional ``metadata``, timestamped now.

        Args:
            job_id: our job id, a non-empty str.
            metadata: a small JSON-serialisable mapping with str keys; it travels inside the
                token, so every byte counts against the 1024-character limit.

        Returns:
            The token (ASCII, URL-safe, at most 1024 characters).

        Raises:
            ValueError: ``job_id`` is empty or not a str, or metadata has non-str keys.
            TypeError: metadata holds a value JSON cannot encode.
            ReplyRefTooLong: the token would exceed 1024 characters.
        """
        if not isinstance(job_id, str) or not job_id:
            raise ValueError("job_id must be a non-empty string")
        payload: dict[str, Any] = {"j": job_id}
        if metadata:
            meta = dict(metadata)
            if not all(isinstance(key, str) for key in meta):
                raise ValueError("metadata keys must be strings")
            # Fail here with a TypeError rather than deep inside itsdangerous.
            json.dumps(meta)
            payload["m"] = meta
        token = self._serializer.dumps(payload)
        if len(token) > MAX_REPLY_REF_LENGTH:
            raise ReplyRefTooLong(
                f"replyRef would be {len(token)} characters, over the vendor's limit of "
                f"{MAX_REPLY_REF_LENGTH}; attach less metadata (smaller or fewer values)",
                length=len(token),
            )
        return token

    def verify(
        self, token: str | None, *, max_age: float, now: datetime | None = None
    ) -> ReplyRefClaims:
        """Check a token and return what it says.

        Args:
            token: the ``replyRef`` from a callback; any value is accepted and checked.
            max_age: the oldest token accepted, in seconds.
            now: the current time (aware); defaults to the clock. Tests pass it to move time.

        Returns:
            The claims of a token signed with one of our keys and this salt.

        Raises:
            ReplyRefExpired: the signature is good but the token is older than ``max_age`` or
                dated more than ``ALLOWED_CLOCK_SKEW_SECONDS`` ahead of ``now``.
            ReplyRefInvalid: anything else wrong (see the class). No other exception type is
                raised for any value of ``token``.
        """
        if token is None:
            raise ReplyRefInvalid("replyRef is missing")
        if not isinstance(token, str):
            raise ReplyRefInvalid(f"replyRef must be a string, not {type(token).__name__}")
        if not token:
            raise ReplyRefInvalid("replyRef is empty")
        if len(token) > MAX_REPLY_REF_LENGTH:
            raise ReplyRefInvalid(
                f"replyRef is {len(token)} characters, over the limit of {MAX_REPLY_REF_LENGTH}"
            )
        if _TOKEN_PATTERN.fullmatch(token) is None:
            raise ReplyRefInvalid("replyRef contains characters a signed token never has")
        try:
            payload, issued_at = self._serializer.loads(token, return_timestamp=True)
        except BadData as e:
            raise ReplyRefInvalid(f"replyRef does not verify: {type(e).__name__}") from e
        except (ValueError, TypeError, OverflowError, RecursionError) as e:
            raise ReplyRefInvalid("replyRef is malformed") from e
        claims = _claims_from_payload(payload, issued_at)
        current = now if now is not None else datetime.now(UTC)
        if current.tzinfo is None:
            # A caller's mistake, but verify() promises ReplyRefInvalid and nothing else.
            raise ReplyRefInvalid("verify() needs an aware datetime as 'now'")
        age = current - claims.issued_at
        if age > timedelta(seconds=max_age):
            raise ReplyRefExpired(
                f"replyRef is {age.total_seconds():.0f} s old, over the limit of {max_age:g} s",
                issued_at=claims.issued_at,
            )
        if age < -timedelta(seconds=ALLOWED_CLOCK_SKEW_SECONDS):
            raise ReplyRefExpired(
                f"replyRef is dated {-age.total_seconds():.0f} s in the future",
                issued_at=claims.issued_at,
            )
        return claims


def _claims_from_payload(payload: Any, issued_at: Any) -> ReplyRefClaims:
    """Check the signed payload's shape: ``{"j": non-empty str, "m"?: object}``, nothing else."""
    if not isinstance(payload, dict):
        raise ReplyRefInvalid("replyRef payload is not an object")
    if not set(payload) <= {"j", "m"}:
        raise ReplyRefInvalid("replyRef payload has unexpected fields")
    job_id = payload.get("j")
    if not isinstance(job_id, str) or not job_id:
        raise ReplyRefInvalid("replyRef payload has no job id")
    metadata = payload.get("m", {})
    if not isinstance(metadata, dict):
        raise ReplyRefInvalid("replyRef metadata is not an object")
    if not isinstance(issued_at, datetime):
        raise ReplyRefInvalid("replyRef has no usable timestamp")
    if issued_at.tzinfo is None:
        issued_at = issued_at.replace(tzinfo=UTC)
    return ReplyRefClaims(job_id=job_id, metadata=metadata, issued_at=issued_at.astimezone(UTC))
