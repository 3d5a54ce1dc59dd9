"""ReplyRefSigner: sign, verify, rotate, expire, and refuse everything else."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer

from client import (
    MAX_REPLY_REF_LENGTH,
    ReplyRefClaims,
    ReplyRefError,
    ReplyRefExpired,
    ReplyRefInvalid,
    ReplyRefSigner,
    ReplyRefTooLong,
)

DAY = 86400.0
SALT = "runway-relay.replyref.v1"


@pytest.fixture
def signer() -> ReplyRefSigner:
    return ReplyRefSigner(["current-key"])


def test_round_trip_with_metadata(signer: ReplyRefSigner) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    token = signer.sign("job-42", {"customer": "acme", "n": 3, "tags": ["a", "b"]})
    claims = signer.verify(token, max_age=DAY)

    assert isinstance(claims, ReplyRefClaims)
    assert claims.job_id == "job-42"
    assert claims.metadata == {"customer": "acme", "n": 3, "tags": ["a", "b"]}
    assert claims.issued_at.tzinfo is not None
    assert claims.issued_at.utcoffset() == timedelta(0)
    assert before <= claims.issued_at <= datetime.now(UTC)


def test_round_trip_without_metadata_is_compact(signer: ReplyRefSigner) -> None:
    token = signer.sign("job-1")
    assert signer.verify(token, max_age=DAY).metadata == {}
    assert len(token) < 60
    assert len(signer.sign("job-1", {})) == len(token)


def test_tokens_are_url_safe_and_need_no_json_escaping(signer: ReplyRefSigner) -> None:
    token = signer.sign("jöb/ü?&", {"k": 'välue "quoted" <tag>'})
    assert re.fullmatch(r"[A-Za-z0-9_\-.]+", token)
    assert json.dumps(token) == f'"{token}"'


def test_large_repetitive_metadata_is_compressed(signer: ReplyRefSigner) -> None:
    token = signer.sign("job-1", {"note": "abc" * 200})
    assert token.startswith(".")  # itsdangerous marks zlib-compressed payloads with "."
    assert len(token) < 200
    assert signer.verify(token, max_age=DAY).metadata == {"note": "abc" * 200}


@settings(max_examples=60, deadline=None)
@given(
    job_id=st.text(min_size=1, max_size=40),
    metadata=st.dictionaries(
        st.text(max_size=8),
        st.one_of(st.none(), st.booleans(), st.integers(-(10**9), 10**9), st.text(max_size=16)),
        max_size=4,
    ),
)
def test_round_trip_property(job_id: str, metadata: dict[str, Any]) -> None:
    signer = ReplyRefSigner(["k"])
    claims = signer.verify(signer.sign(job_id, metadata), max_age=DAY)
    assert (claims.job_id, claims.metadata) == (job_id, metadata)


def test_rotation_old_token_verifies_with_new_and_old_keys() -> None:
    old = ReplyRefSigner(["old-key"])
    token = old.sign("job-7")

    rotated = ReplyRefSigner(["new-key", "old-key"])
    assert rotated.verify(token, max_age=DAY).job_id == "job-7"

    new_only = ReplyRefSigner(["new-key"])
    with pytest.raises(ReplyRefInvalid):
        new_only.verify(token, max_age=DAY)


def test_rotation_signs_with_the_first_key() -> None:
    rotated = ReplyRefSigner(["new-key", "old-key"])
    token = rotated.sign("job-8")
    assert ReplyRefSigner(["new-key"]).verify(token, max_age=DAY).job_id == "job-8"
    with pytest.raises(ReplyRefInvalid):
        ReplyRefSigner(["old-key"]).verify(token, max_age=DAY)


def test_empty_keys_are_ignored_when_rotating() -> None:
    token = ReplyRefSigner(["", "k1"]).sign("job")
    assert ReplyRefSigner(["k1"]).verify(token, max_age=DAY).job_id == "job"


def test_expiry_follows_the_given_now(signer: ReplyRefSigner) -> None:
    token = signer.sign("job-1")
    issued = signer.verify(token, max_age=DAY).issued_at

    assert signer.verify(token, max_age=60, now=issued + timedelta(seconds=60)).job_id == "job-1"
    with pytest.raises(ReplyRefExpired) as caught:
        signer.verify(token, max_age=60, now=issued + timedelta(seconds=61))
    assert caught.value.issued_at == issued
    assert isinstance(caught.value, ReplyRefInvalid)


def test_token_from_the_future_is_refused(signer: ReplyRefSigner) -> None:
    token = signer.sign("job-1")
    issued = signer.verify(token, max_age=DAY).issued_at
    assert signer.verify(token, max_age=DAY, now=issued - timedelta(seconds=60)).job_id == "job-1"
    with pytest.raises(ReplyRefExpired):
        signer.verify(token, max_age=DAY, now=issued - timedelta(hours=1))


def test_naive_now_is_refused_as_invalid(signer: ReplyRefSigner) -> None:
    token = signer.sign("job-1")
    with pytest.raises(ReplyRefInvalid):
        signer.verify(token, max_age=DAY, now=datetime(2030, 1, 1))


def _flip(char: str) -> str:
    return "B" if char != "B" else "C"


@pytest.mark.parametrize("position", ["payload", "timestamp", "signature"])
def test_tampered_tokens_are_invalid(signer: ReplyRefSigner, position: str) -> None:
    token = signer.sign("job-1", {"plan": "free"})
    payload, timestamp, signature = token.split(".")
    if position == "payload":
        payload = payload[:-2] + _flip(payload[-2]) + payload[-1]
    elif position == "timestamp":
        timestamp = timestamp[:-1] + _flip(timestamp[-1])
    else:
        signature = signature[:-2] + _flip(signature[-2]) + signature[-1]
    with pytest.raises(ReplyRefInvalid):
        signer.verify(f"{payload}.{timestamp}.{signature}", max_age=DAY)


def test_swapped_payload_with_valid_looking_structure_is_invalid(signer: ReplyRefSigner) -> None:
    mine = signer.sign("job-1")
    theirs = signer.sign("job-2")
    forged = ".".join([theirs.split(".")[0], *mine.split(".")[1:]])
    with pytest.raises(ReplyRefInvalid):
        signer.verify(forged, max_age=DAY)


def test_wrong_salt_is_invalid() -> None:
    token = ReplyRefSigner(["k"], salt="another-purpose").sign("job-1")
    with pytest.raises(ReplyRefInvalid):
        ReplyRefSigner(["k"]).verify(token, max_age=DAY)


@pytest.mark.parametrize(
    "payload",
    [
        {"x": 1},
        [1, 2],
        "job-1",
        5,
        None,
        {"j": 5},
        {"j": ""},
        {"j": "a", "m": [1]},
        {"j": "a", "z": 1},
    ],
)
def test_valid_signature_over_a_wrong_shape_is_invalid(payload: Any) -> None:
    forged = URLSafeTimedSerializer("k", salt=SALT).dumps(payload)
    with pytest.raises(ReplyRefInvalid):
        ReplyRefSigner(["k"]).verify(forged, max_age=DAY)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        " ",
        "abc",
        "a.b.c",
        "...",
        "é.é.é",
        "x" * (MAX_REPLY_REF_LENGTH + 1),
        42,
        b"abc",
        {},
    ],
)
def test_missing_and_malformed_values_are_invalid(signer: ReplyRefSigner, value: Any) -> None:
    with pytest.raises(ReplyRefInvalid):
        signer.verify(value, max_age=DAY)


def test_over_long_but_validly_signed_token_is_refused() -> None:
    long_token = URLSafeTimedSerializer("k", salt=SALT).dumps(
        {"j": "a", "m": {"x": os.urandom(800).hex()}}
    )
    assert len(long_token) > MAX_REPLY_REF_LENGTH
    with pytest.raises(ReplyRefInvalid, match="over the limit"):
        ReplyRefSigner(["k"]).verify(long_token, max_age=DAY)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_garbage_text_only_ever_raises_reply_ref_invalid(garbage: str) -> None:
    signer = ReplyRefSigner(["k"])
    with pytest.raises(ReplyRefInvalid):
        signer.verify(garbage, max_age=DAY)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ABCDEFabcdef0123456789-_.", max_size=120))
def test_garbage_in_the_token_alphabet_only_ever_raises_reply_ref_invalid(garbage: str) -> None:
    signer = ReplyRefSigner(["k"])
    with pytest.raises(ReplyRefInvalid):
        signer.verify(garbage, max_age=DAY)


def test_sign_refuses_a_token_over_1024_characters(signer: ReplyRefSigner) -> None:
    with pytest.raises(ReplyRefTooLong) as caught:
        signer.sign("job-1", {"blob": os.urandom(1000).hex()})
    assert isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, ReplyRefError)
    assert caught.value.length > MAX_REPLY_REF_LENGTH
    assert str(caught.value.length) in str(caught.value)
    assert "metadata" in str(caught.value)


@pytest.mark.parametrize("job_id", ["", None, 5])
def test_sign_requires_a_job_id(signer: ReplyRefSigner, job_id: Any) -> None:
    with pytest.raises(ValueError):
        signer.sign(job_id)


def test_sign_refuses_metadata_json_cannot_encode(signer: ReplyRefSigner) -> None:
    with pytest.raises(TypeError):
        signer.sign("job", {"when": datetime.now(UTC)})


@pytest.mark.parametrize("keys", [[], [""], ["", ""], "single-string"])
def test_signer_needs_a_non_empty_key(keys: Any) -> None:
    with pytest.raises(ValueError):
        ReplyRefSigner(keys)


def test_claims_are_frozen(signer: ReplyRefSigner) -> None:
    claims = signer.verify(signer.sign("job"), max_age=DAY)
    with pytest.raises(AttributeError):
        claims.job_id = "other"  # type: ignore[misc]
