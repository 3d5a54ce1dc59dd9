"""The one decoder of JSON request bodies: callbacks and ``/api/*`` read their bodies here.

A body is read whole but no larger than ``MAX_CONTENT_LENGTH`` (:func:`read_body`), then
decoded strictly (:func:`parse_json_object`): UTF-8, standard JSON, an object at the top,
bounded depth, finite numbers that fit a float, strings a database can store.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

#: Deepest JSON nesting accepted in a body (a callback's task object is 4 levels deep).
MAX_DEPTH = 32
#: Longest integer accepted, in digits: a longer one does not fit a float (JSON numbers from
#: the vendor's JavaScript never do).
MAX_INT_DIGITS = 308
#: What no stored string may hold: NUL (PostgreSQL's text and jsonb refuse it) and unpaired
#: UTF-16 surrogates (``"\\ud800"``: not Unicode; neither database stores them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: In a body's JSON text, what any such string needs: NUL and surrogates can only be written
#: as ``\\u`` escapes (raw control characters are not JSON, and a UTF-8 body decodes to no
#: surrogate), so a text without one needs no walk through its strings.
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89abcdefABCDEF])")


class BadBody(ValueError):
    """A request body is not a JSON object we can read; the message says why."""


def _reject_constant(name: str) -> NoReturn:
    raise BadBody(f"JSON constant {name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadBody(f"number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise BadBody(f"integer of {digits} digits is too large (at most {MAX_INT_DIGITS})")
    return int(text)


def _check_strings(value: Any) -> None:
    """Refuse keys and strings that cannot be stored (see ``_UNSTORABLE``)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            found = _UNSTORABLE.search(item)
            if found:
                char = found.group()
                what = (
                    "NUL (\\u0000)"
                    if char == "\x00"
                    else f"an unpaired surrogate (\\u{ord(char):04x})"
                )
                raise BadBody(f"a JSON string holds {what}, which is not accepted")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Decode a request body (a callback's, or one of ``/api/*``): strict UTF-8, standard
    JSON, an object at the top, bounded depth, finite numbers that fit a float, and strings a
    database can store (no NUL, no unpaired surrogate).

    :raises BadBody: with a precise message (empty, not UTF-8, not JSON, not an object, …).
    """
    if not raw.strip():
        raise BadBody("empty body; expected a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except BadBody:
        raise
    except json.JSONDecodeError as exc:
        raise BadBody(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise BadBody("JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with too many digits
        raise BadBody(f"body is not acceptable JSON: {str(exc)[:120]}") from None
    if not isinstance(value, dict):
        raise BadBody(f"expected a JSON object, got {type(value).__name__}")
    if _depth(value) > MAX_DEPTH:
        raise BadBody(f"JSON nested deeper than {MAX_DEPTH} levels")
    if _UNSTORABLE_ESCAPE.search(text):
        _check_strings(value)
    return value


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        nxt: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nxt.extend(item.values())
            elif isinstance(item, list):
                nxt.extend(item)
        level = nxt
        if depth > MAX_DEPTH:
            break
    return depth if level else depth - 1  # cut short: deeper than MAX_DEPTH


def read_body() -> bytes:
    """The request's raw body, refused past ``MAX_CONTENT_LENGTH``.

    A body with a ``Content-Length`` over the limit is refused before it is read (werkzeug);
    a chunked one is read up to the limit, and werkzeug then hands over what it read without
    an error, so one more byte is asked for: if there is one, the body was too large.

    :raises RequestEntityTooLarge: the body is larger than ``MAX_CONTENT_LENGTH``.
    """
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    if limit is not None and len(raw) >= limit and request.content_length is None:
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    return raw
