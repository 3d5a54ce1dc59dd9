"""The one body decoder (receiver.web.body.parse_json_object) and the one bearer check
(receiver.web.auth.bearer_matches), without a request."""

from __future__ import annotations

import pytest

from receiver.web.auth import bearer_matches, token_matches
from receiver.web.body import MAX_DEPTH, MAX_INT_DIGITS, BadBody, parse_json_object

TOKEN = "s3cret-admin-token"


@pytest.mark.parametrize(
    "header",
    [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer   {TOKEN}  "],
)
def test_bearer_accepts_the_token_whatever_the_scheme_case(header: str) -> None:
    assert bearer_matches(header, TOKEN)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        TOKEN,
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Bearer ",
        f"Bearer{TOKEN}",
    ],
)
def test_bearer_refuses_anything_else(header: str | None) -> None:
    assert not bearer_matches(header, TOKEN)


def test_bearer_with_no_token_configured_matches_nothing() -> None:
    assert not bearer_matches("Bearer ", "")
    assert not bearer_matches("Bearer x", "")


def test_token_matches_compares_the_token_itself() -> None:
    assert token_matches(f" {TOKEN}\n", TOKEN)
    assert not token_matches(TOKEN + "x", TOKEN)
    assert not token_matches("", "")


def test_body_decodes_a_json_object() -> None:
    assert parse_json_object('{"a": [1, 2.5, "é"]}'.encode()) == {"a": [1, 2.5, "é"]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty body"),
        (b"  \n", "empty body"),
        (b"\xff{}", "not valid UTF-8"),
        (b"{", "not valid JSON"),
        (b"[1]", "expected a JSON object"),
        (b'{"a": NaN}', "constant NaN"),
        (b'{"a": 1e999}', "out of range"),
        (b'{"a": ' + b"9" * (MAX_INT_DIGITS + 1) + b"}", "too large"),
        (b'{"a": "x\\u0000"}', "NUL"),
        (b'{"a": "\\ud800"}', "unpaired surrogate"),
        (b'{"\\u0000": 1}', "NUL"),
        (b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), "nested"),
    ],
)
def test_body_refusals_say_why(raw: bytes, message: str) -> None:
    with pytest.raises(BadBody, match=message):
        parse_json_object(raw)


def test_body_at_the_depth_limit_passes() -> None:
    raw = b'{"a":' * (MAX_DEPTH - 1) + b"1" + b"}" * (MAX_DEPTH - 1)
    assert parse_json_object(raw)["a"] is not None
