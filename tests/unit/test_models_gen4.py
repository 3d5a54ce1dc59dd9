"""Which images and fields each model takes: `submission.check_submission`, the check that gives
`relay submit` and `POST /api/tasks` one clear message (naming the model, the option and the
API field) before anything is stored or sent (the end-to-end tests in
``tests/e2e/test_models.py`` show that nothing is)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.services import InvalidSubmission
from receiver.submission import Submission, check_submission, resolve_model


def check(model: str, params: dict[str, Any], images: dict[str, str]) -> None:
    video_model = params.pop("model", None) if model == "videos" else None
    submission = Submission(model=model, params=params, images=images, metadata={})
    check_submission(submission, resolve_model(model, video_model))


@pytest.mark.parametrize(
    ("model", "params", "images"),
    [
        ("gen3turbo", {}, {}),
        ("gen3turbo", {"zoom": 2, "firstImage_assetId": "a"}, {"middle": "m", "last": "l"}),
        ("gen4turbo", {"seconds": 10, "aspect_ratio": "21:9"}, {"first": "f"}),
        ("gen4turbo", {"first_image_asset_id": "already-uploaded"}, {}),
        ("gen4turbo", {"firstImage_assetId": "already-uploaded", "exploreMode": True}, {}),
        ("videos", {"model": "kling-3.0-pro", "duration": 10}, {"first": "f", "last": "l"}),
        ("gen4.5", {"imageAssetId1": "a", "explore_mode": False}, {}),
        ("gen4.5", {"duration": 4}, {}),
        ("veo-3.1", {"resolution": "1080p", "duration": 8}, {"first": "f", "last": "l"}),
        ("seedance-2", {"resolution": "720p"}, {"first": "f", "last": "l"}),
    ],
)
def test_fitting_submissions_pass(
    model: str, params: dict[str, Any], images: dict[str, str]
) -> None:
    check(model, params, images)  # raises if refused


@pytest.mark.parametrize(
    ("model", "params", "images", "message"),
    [
        ("gen4turbo", {}, {}, "gen4turbo needs a first image (image)"),
        (
            "gen4turbo",
            {},
            {"first": "f", "last": "l"},
            "gen4turbo takes no last image (last_image); it takes: first image (image)",
        ),
        ("gen4turbo", {}, {"first": "f", "middle": "m"}, "gen4turbo takes no middle image"),
        ("videos", {"model": "gen4"}, {"middle": "m"}, "gen4 takes no middle image"),
        ("gen4.5", {}, {"first": "f", "last": "l"}, "gen4.5 takes no last image"),
        ("gen4", {"text_prompt": "x"}, {}, "gen4 needs a first image (image)"),
        ("gen4.5", {"resolution": "720p"}, {}, "gen4.5 does not take 'resolution'"),
        ("kling-3.0-pro", {"exploreMode": True}, {}, "kling-3.0-pro does not take 'exploreMode'"),
        ("gen4turbo", {"zoom": 1}, {"first": "f"}, "gen4turbo does not take 'zoom'; its fields:"),
        (
            "gen4turbo",
            {"duration": 10},
            {"first": "f"},
            "gen4turbo does not take 'duration' (its video length is 'seconds')",
        ),
        (
            "videos",
            {"model": "gen4-turbo", "seconds": 10},
            {"first": "f"},
            "gen4-turbo does not take 'seconds' (its video length is 'duration')",
        ),
        ("gen3turbo", {"duration": 5}, {}, "gen3turbo does not take 'duration' (its video"),
        ("gen4.5", {"prompt": "x"}, {}, "gen4.5 does not take 'prompt'"),
    ],
)
def test_misfits_are_named(
    model: str, params: dict[str, Any], images: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidSubmission) as caught:
        check(model, params, images)
    assert message in str(caught.value)
    assert (caught.value.http_status, caught.value.code) == (422, "validation_error")


def test_field_list_names_every_field_but_the_images() -> None:
    # A listed model's fields are its row's (client/catalog.py), under their Python names.
    with pytest.raises(InvalidSubmission) as caught:
        check("gen4-turbo", {"colour": "red"}, {"first": "f"})
    listed = str(caught.value).rsplit("its fields: ", 1)[1].split(", ")
    assert listed == [
        "text_prompt",
        "aspect_ratio",
        "resolution",
        "duration",
        "seed",
        "explore_mode",
        "max_jobs",
    ]


def test_videos_alias_needs_a_video_model() -> None:
    with pytest.raises(InvalidSubmission, match="model videos needs a video model"):
        resolve_model("videos", None)
    assert resolve_model("videos", "gen4") == resolve_model("gen4")


def test_no_model_is_gen45_on_videos_create() -> None:
    target = resolve_model(None)
    assert (target.name, target.endpoint, target.vendor_model) == (
        "gen4.5",
        "/videos/create",
        "gen4.5",
    )


def test_cli_video_model_is_for_videos_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Refused while reading the options: no runtime, database or vendor is touched.
    monkeypatch.setattr("receiver.cli.configure_logging", lambda *args, **kwargs: None)
    env = {
        "RELAY_ENV": "test",
        "SECRET_KEY": "unit-test-secret-key-0123456789",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'never-created.sqlite3'}",
    }
    result = CliRunner().invoke(
        main, ["submit", "--model", "gen3turbo", "--video-model", "gen4-turbo"], env=env
    )
    assert result.exit_code == 2, result.output
    assert "--video-model is for model videos only, not gen3turbo" in result.output
    assert not (tmp_path / "never-created.sqlite3").exists()


def test_relay_models_prints_the_table_with_its_source() -> None:
    from client.catalog import SOURCE, VIDEO_MODELS

    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0, result.output
    assert SOURCE in result.output and "(default gen4.5)" in result.output
    for name in VIDEO_MODELS:
        assert f"\n{name}  (" in result.output
    assert "startFrameAssetId, endFrameAssetId" in result.output
    assert "at most 5000 characters" in result.output
    as_json = CliRunner().invoke(main, ["models", "--json"])
    table = json.loads(as_json.output)
    assert [m["model"] for m in table["models"]] == list(VIDEO_MODELS)
    assert table["models"][0]["durations"] == list(range(2, 11))


def test_submit_help_is_made_from_the_table() -> None:
    from client.catalog import VIDEO_MODELS

    result = CliRunner().invoke(main, ["submit", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "default gen4.5" in text
    for spec in VIDEO_MODELS.values():
        assert f"{spec.name}: " in text
    assert "--account" in text and "USEAPI_ACCOUNT_EMAIL" in text


def test_openapi_document_is_made_from_the_table() -> None:
    from client.catalog import SOURCE, VIDEO_MODELS
    from receiver.web.api import api_document

    doc = api_document()
    table = doc["components"]["x-video-models"]
    assert table["source"] == SOURCE and table["default"] == "gen4.5"
    assert [m["model"] for m in table["models"]] == list(VIDEO_MODELS)
    model = doc["components"]["schemas"]["TaskSubmissionIn"]["properties"]["model"]
    assert model["default"] == "gen4.5"
    for spec in VIDEO_MODELS.values():
        assert f"{spec.name} (duration" in model["description"]
        assert spec.name in model["examples"]
    assert "account" in doc["components"]["schemas"]["TaskSubmissionIn"]["properties"]
