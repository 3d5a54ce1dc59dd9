"""Request models (strict, vendor facts) and vendor answer models (lenient)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from client import (
    REQUEST_TYPES,
    CreateRequest,
    Gen3TurboRequest,
    Gen4TurboRequest,
    SchedulerEntry,
    VendorArtifact,
    VendorError,
    VendorTask,
    VideosCreateRequest,
)

MOTION = ["horizontal", "vertical", "roll", "zoom", "pan", "tilt"]
URL = "https://relay.example/callbacks/useapi"
REF = "ref-token"

# (field, accepted values at the bounds, rejected values just outside)
GEN3_RANGES: list[tuple[str, list[Any], list[Any]]] = [
    *[(name, [-10, 0, 10], [-11, 11]) for name in MOTION],
    ("seconds", [5, 10], [4, 6, 0, 15]),
    ("seed", [1, 4294967294], [0, 4294967295, -1]),
    ("max_jobs", [1, 10], [0, 11]),
    ("aspect_ratio", ["landscape", "portrait"], ["square", "16:9", "LANDSCAPE", ""]),
]
INT_FIELDS = [*MOTION, "seconds", "seed", "max_jobs"]


def _cases(ranges: list[tuple[str, list[Any], list[Any]]], accepted: bool) -> list[Any]:
    return [
        pytest.param(name, value, id=f"{name}={value!r}")
        for name, good, bad in ranges
        for value in (good if accepted else bad)
    ]


# ---------------------------------------------------------------------------------------------
# Gen-3 Alpha Turbo
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), _cases(GEN3_RANGES, accepted=True))
def test_gen3_accepts_values_at_the_bounds(name: str, value: Any) -> None:
    request = Gen3TurboRequest(**{name: value})
    assert getattr(request, name) == value


@pytest.mark.parametrize(("name", "value"), _cases(GEN3_RANGES, accepted=False))
def test_gen3_rejects_values_just_outside(name: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        Gen3TurboRequest(**{name: value})


@pytest.mark.parametrize("name", INT_FIELDS)
@pytest.mark.parametrize("value", [True, False, 5.0, 5.5, "5", [5]])
def test_gen3_int_fields_accept_ints_only(name: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        Gen3TurboRequest(**{name: value})


@pytest.mark.parametrize("name", ["static", "explore_mode"])
@pytest.mark.parametrize("value", [1, "true", "yes"])
def test_gen3_bool_fields_accept_bools_only(name: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        Gen3TurboRequest(**{name: value})


def test_gen3_all_fields_optional() -> None:
    assert Gen3TurboRequest().to_payload(URL, REF) == {"replyUrl": URL, "replyRef": REF}


@pytest.mark.parametrize("name", MOTION)
@pytest.mark.parametrize("value", [0, 5, -10])
def test_gen3_static_is_not_compatible_with_motion(name: str, value: int) -> None:
    with pytest.raises(ValidationError, match="static"):
        Gen3TurboRequest.model_validate({"static": True, name: value})


def test_gen3_static_alone_and_static_false_with_motion_are_fine() -> None:
    assert Gen3TurboRequest(static=True).static is True
    assert Gen3TurboRequest(static=False, zoom=3).zoom == 3


@pytest.mark.parametrize("extra", [{"camera": {"x": 1}}, {"firstImage": "a"}, {"account": "a@b.c"}])
def test_gen3_rejects_unknown_fields(extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Gen3TurboRequest(**extra)


def test_gen3_rejects_empty_asset_id() -> None:
    with pytest.raises(ValidationError):
        Gen3TurboRequest(first_image_asset_id="")


def test_gen3_is_frozen() -> None:
    request = Gen3TurboRequest(zoom=1)
    with pytest.raises(ValidationError):
        request.zoom = 2


def test_payload_leaves_out_unset_fields_including_max_jobs() -> None:
    payload = Gen3TurboRequest(text_prompt="x", static=False).to_payload(URL, REF)
    assert payload == {"text_prompt": "x", "static": False, "replyUrl": URL, "replyRef": REF}
    assert "maxJobs" not in payload


def test_gen3_accepts_vendor_names_too() -> None:
    request = Gen3TurboRequest.model_validate(
        {"firstImage_assetId": "a1", "exploreMode": False, "maxJobs": 2}
    )
    assert (request.first_image_asset_id, request.explore_mode, request.max_jobs) == (
        "a1",
        False,
        2,
    )


def test_reply_url_limit_is_1024_characters() -> None:
    request = Gen3TurboRequest()
    exact = URL + "?" + "a" * (1024 - len(URL) - 1)
    assert len(exact) == 1024
    assert request.to_payload(exact, REF)["replyUrl"] == exact
    with pytest.raises(ValueError, match="1024"):
        request.to_payload(exact + "a", REF)


@pytest.mark.parametrize("reply_url", ["", "ftp://x.example/cb", "relay.example/cb"])
def test_reply_url_must_be_http(reply_url: str) -> None:
    with pytest.raises(ValueError):
        Gen3TurboRequest().to_payload(reply_url, REF)


@pytest.mark.parametrize("reply_ref", ["", "r" * 1025])
def test_reply_ref_must_be_non_empty_and_at_most_1024(reply_ref: str) -> None:
    with pytest.raises(ValueError):
        Gen3TurboRequest().to_payload(URL, reply_ref)
    assert Gen3TurboRequest().to_payload(URL, "r" * 1024)["replyRef"] == "r" * 1024


# ---------------------------------------------------------------------------------------------
# Gen-4 Turbo and the unified endpoint
# ---------------------------------------------------------------------------------------------


def test_gen4_requires_first_image() -> None:
    with pytest.raises(ValidationError):
        Gen4TurboRequest()  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Gen4TurboRequest(first_image_asset_id="")


@pytest.mark.parametrize(
    "extra",
    [{"zoom": 1}, {"static": True}, {"last_image_asset_id": "a"}, {"lastImage_assetId": "a"}],
)
def test_gen4_rejects_camera_and_last_image(extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Gen4TurboRequest(first_image_asset_id="a", **extra)


@pytest.mark.parametrize("ratio", ["16:9", "9:16", "1:1", "4:3", "3:4", "21:9"])
def test_gen4_aspect_ratios(ratio: str) -> None:
    assert Gen4TurboRequest(first_image_asset_id="a", aspect_ratio=ratio).aspect_ratio == ratio  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("aspect_ratio", "landscape"),
        ("aspect_ratio", "2:1"),
        ("seconds", 8),
        ("seed", 0),
        ("max_jobs", 11),
    ],
)
def test_gen4_rejects_out_of_range(name: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        Gen4TurboRequest(first_image_asset_id="a", **{name: value})


def test_videos_requires_model() -> None:
    with pytest.raises(ValidationError):
        VideosCreateRequest()  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("cls", "fields", "vendor_names"),
    [
        pytest.param(
            Gen3TurboRequest,
            {
                "first_image_asset_id": "a1",
                "middle_image_asset_id": "a2",
                "last_image_asset_id": "a3",
                "text_prompt": "a fox in snow",
                "aspect_ratio": "portrait",
                "horizontal": 1,
                "vertical": -2,
                "roll": 3,
                "zoom": -4,
                "pan": 5,
                "tilt": -6,
                "seconds": 10,
                "seed": 12345678,
                "explore_mode": True,
                "max_jobs": 5,
            },
            {
                "first_image_asset_id": "firstImage_assetId",
                "middle_image_asset_id": "middleImage_assetId",
                "last_image_asset_id": "lastImage_assetId",
                "explore_mode": "exploreMode",
                "max_jobs": "maxJobs",
            },
            id="gen3turbo",
        ),
        pytest.param(
            Gen4TurboRequest,
            {
                "first_image_asset_id": "a1",
                "text_prompt": "p",
                "aspect_ratio": "21:9",
                "seconds": 5,
                "seed": 7,
                "max_jobs": 1,
            },
            {"first_image_asset_id": "firstImage_assetId", "max_jobs": "maxJobs"},
            id="gen4turbo",
        ),
        # A model not in the table (veo-3.1) is passed through: every field under its vendor
        # name.
        pytest.param(
            VideosCreateRequest,
            {
                "model": "veo-3.1",
                "text_prompt": "p",
                "first_image_asset_id": "s",
                "last_image_asset_id": "e",
                "aspect_ratio": "9:16",
                "duration": 10,
                "seed": 3,
                "explore_mode": False,
                "max_jobs": 2,
            },
            {
                "first_image_asset_id": "imageAssetId1",
                "last_image_asset_id": "imageAssetId2",
                "explore_mode": "exploreMode",
                "max_jobs": "maxJobs",
            },
            id="videos",
        ),
    ],
)
def test_payload_uses_vendor_names_and_adds_reply_fields(
    cls: type[CreateRequest], fields: dict[str, Any], vendor_names: dict[str, str]
) -> None:
    """Every field set is sent, under its vendor name (``vendor_names``; the same name when
    not there), and nothing else but ``replyUrl`` and ``replyRef``."""
    expected = {vendor_names.get(name, name): value for name, value in fields.items()}
    payload = cls(**fields).to_payload(URL, REF)
    assert payload == {**expected, "replyUrl": URL, "replyRef": REF}


@pytest.mark.parametrize(
    ("duration", "ok"), [(1, True), (60, True), (0, False), (61, False), (True, False)]
)
def test_videos_duration_bounds_of_an_unlisted_model(duration: Any, ok: bool) -> None:
    if ok:
        assert VideosCreateRequest(model="sora-2", duration=duration).duration == duration
    else:
        with pytest.raises(ValidationError):
            VideosCreateRequest(model="sora-2", duration=duration)


@pytest.mark.parametrize("cls", [Gen3TurboRequest, Gen4TurboRequest, VideosCreateRequest])
def test_every_create_carries_the_account_as_email(cls: type[CreateRequest]) -> None:
    # useapi.net: with several accounts configured, email is required on every create.
    base: dict[str, Any] = {"first_image_asset_id": "a"}
    if cls is VideosCreateRequest:
        base["model"] = "gen4.5"
    payload = cls.model_validate({**base, "email": "me@example.com"}).to_payload(URL, REF)
    assert payload["email"] == "me@example.com"
    assert "email" not in cls.model_validate(base).to_payload(URL, REF)
    with pytest.raises(ValidationError):
        cls.model_validate({**base, "email": "not an email"})


def test_request_types_registry() -> None:
    assert REQUEST_TYPES == {
        "gen3turbo": Gen3TurboRequest,
        "gen4turbo": Gen4TurboRequest,
        "videos": VideosCreateRequest,
    }
    for name, cls in REQUEST_TYPES.items():
        assert issubclass(cls, CreateRequest)
        assert cls.MODEL == name
        assert cls.ENDPOINT == f"/{name}/create"
    # ClassVars never leak into the payload
    assert "ENDPOINT" not in Gen3TurboRequest().to_payload(URL, REF)


# ---------------------------------------------------------------------------------------------
# VendorTask and friends: lenient
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", 1.0),
        ("0.25", 0.25),
        (" 0.5 ", 0.5),
        (0.5, 0.5),
        (0, 0.0),
        (1, 1.0),
        (2, 1.0),
        ("7", 1.0),
        (-0.3, 0.0),
        ("abc", None),
        ("", None),
        (None, None),
        (True, None),
        (float("nan"), None),
        ("inf", None),
        ([0.5], None),
        ({"v": 1}, None),
    ],
)
def test_progress_ratio_is_coerced_and_clamped(raw: Any, expected: float | None) -> None:
    assert VendorTask.model_validate({"progressRatio": raw}).progressRatio == expected


@pytest.mark.parametrize(
    ("raw", "expected_type", "text"),
    [
        (None, type(None), None),
        ("Task failed", str, "Task failed"),
        ({"errorMessage": "Moderated", "reason": "SAFETY"}, VendorError, "Moderated"),
        ({"reason": "timeout", "tally_asimov": True}, VendorError, "timeout"),
        ({"moderation_category": "NSFW"}, VendorError, "moderated (NSFW)"),
        ({}, VendorError, "unknown error"),
        (42, str, "42"),
        (["a", 1], str, '["a",1]'),
    ],
)
def test_error_as_null_string_or_object(raw: Any, expected_type: type, text: str | None) -> None:
    task = VendorTask.model_validate({"error": raw})
    assert isinstance(task.error, expected_type)
    assert task.error_text == text


def test_unknown_fields_are_preserved() -> None:
    raw = {
        "taskId": "t1",
        "status": "SUCCEEDED",
        "image": None,
        "sharedAsset": {"x": 1},
        "features": {"storageGB": 500},
        "brandNew": [1, 2],
    }
    task = VendorTask.model_validate(raw)
    assert task.model_extra == {
        "image": None,
        "sharedAsset": {"x": 1},
        "features": {"storageGB": 500},
        "brandNew": [1, 2],
    }
    dumped = task.model_dump()
    assert dumped["features"] == {"storageGB": 500}
    assert dumped["brandNew"] == [1, 2]
    assert dumped["taskId"] == "t1"


@pytest.mark.parametrize(
    "status", ["PENDING", "THROTTLED", "CANCELLED", "SOMETHING_NEW", "succeeded"]
)
def test_status_is_kept_raw(status: str) -> None:
    assert VendorTask.model_validate({"status": status}).status == status


@pytest.mark.parametrize(
    ("raw", "expected"), [(3, "3"), (2.5, "2.5"), (True, None), ({"s": 1}, None)]
)
def test_status_of_the_wrong_type(raw: Any, expected: str | None) -> None:
    assert VendorTask.model_validate({"status": raw}).status == expected


def test_artifacts_are_parsed_leniently() -> None:
    task = VendorTask.model_validate(
        {
            "artifacts": [
                {
                    "url": "https://cdn.example/v.mp4",
                    "assetId": "a1",
                    "fileSize": "123456",
                    "previewUrls": ["https://p/1.jpg", 7],
                    "metadata": {"frameRate": 24, "duration": 5.2},
                    "extraThing": True,
                },
                "https://cdn.example/w.mp4",
                17,
                None,
            ]
        }
    )
    first, second = task.artifacts
    assert isinstance(first, VendorArtifact)
    assert first.url == "https://cdn.example/v.mp4"
    assert first.fileSize == "123456"
    assert first.previewUrls == ["https://p/1.jpg"]
    assert first.metadata == {"frameRate": 24, "duration": 5.2}
    assert first.model_extra == {"extraThing": True}
    assert second.url == "https://cdn.example/w.mp4"


@pytest.mark.parametrize("raw", [None, "x", 5, {"url": "u"}])
def test_artifacts_of_the_wrong_type_become_empty(raw: Any) -> None:
    assert VendorTask.model_validate({"artifacts": raw}).artifacts == []


def test_missing_fields_default() -> None:
    task = VendorTask.model_validate({})
    assert task.taskId is None
    assert task.artifacts == []
    assert task.error is None


def test_other_fields_tolerate_wrong_types() -> None:
    task = VendorTask.model_validate(
        {
            "taskId": 12345,
            "replyRef": {"nested": True},
            "options": ["not", "a", "dict"],
            "estimatedTimeToStartSeconds": "12.5",
            "code": 200.0,
            "createdAt": False,
        }
    )
    assert task.taskId == "12345"
    assert task.replyRef is None
    assert task.options is None
    assert task.estimatedTimeToStartSeconds == 12.5
    assert task.code == 200
    assert task.createdAt is None


@pytest.mark.parametrize("raw", [None, [], "task", 5])
def test_non_objects_are_a_validation_error(raw: Any) -> None:
    with pytest.raises(ValidationError):
        VendorTask.model_validate(raw)


_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
_task_keys = st.sampled_from(
    [
        "taskId",
        "id",
        "name",
        "status",
        "progressText",
        "progressRatio",
        "estimatedTimeToStartSeconds",
        "artifacts",
        "error",
        "code",
        "options",
        "replyUrl",
        "replyRef",
        "createdAt",
        "other",
    ]
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_task_keys, _json, max_size=8))
def test_any_json_object_validates(raw: dict[str, Any]) -> None:
    task = VendorTask.model_validate(raw)
    assert task.progressRatio is None or 0.0 <= task.progressRatio <= 1.0
    assert task.progressRatio is None or not math.isnan(task.progressRatio)
    assert isinstance(task.artifacts, list)
    assert task.status is None or isinstance(task.status, str)
    assert task.error is None or isinstance(task.error, str | VendorError)


def test_scheduler_entry_is_lenient() -> None:
    entry = SchedulerEntry.model_validate({"taskId": "t", "replyRef": 5, "email": "a@b.c"})
    assert entry.taskId == "t"
    assert entry.replyRef == "5"
    assert entry.replyUrl is None
    assert entry.model_extra == {"email": "a@b.c"}
