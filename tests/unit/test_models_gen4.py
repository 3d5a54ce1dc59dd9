"""Which images and fields each model takes: `services.check_submission`, the check that gives
`relay submit` and `POST /api/tasks` one clear message (naming the model, the option and the
API field) before anything is stored or sent (the end-to-end tests in
``tests/e2e/test_models.py`` show that nothing is)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from client import REQUEST_TYPES
from receiver.cli import main
from receiver.services import InvalidSubmission, Submission, check_submission


def check(model: str, params: dict[str, Any], images: dict[str, str]) -> None:
    submission = Submission(model=model, params=params, images=images, metadata={})
    check_submission(submission, REQUEST_TYPES[model])


@pytest.mark.parametrize(
    ("model", "params", "images"),
    [
        ("gen3turbo", {}, {}),
        ("gen3turbo", {"zoom": 2, "firstImage_assetId": "a"}, {"middle": "m", "last": "l"}),
        ("gen4turbo", {"seconds": 10, "aspect_ratio": "21:9"}, {"first": "f"}),
        ("gen4turbo", {"first_image_asset_id": "already-uploaded"}, {}),
        ("gen4turbo", {"firstImage_assetId": "already-uploaded", "exploreMode": True}, {}),
        ("videos", {"model": "gen4-turbo", "duration": 10}, {"first": "f", "last": "l"}),
        ("videos", {"model": "gen4.5", "imageAssetId1": "a", "explore_mode": False}, {}),
    ],
)
def test_fitting_submissions_pass(
    model: str, params: dict[str, Any], images: dict[str, str]
) -> None:
    check(model, params, images)  # raises if refused


@pytest.mark.parametrize(
    ("model", "params", "images", "message"),
    [
        ("gen4turbo", {}, {}, "gen4turbo needs a first image (--image / image)"),
        (
            "gen4turbo",
            {},
            {"first": "f", "last": "l"},
            "gen4turbo takes no last image (--last-image / last_image); "
            "it takes: first image (--image / image)",
        ),
        ("gen4turbo", {}, {"first": "f", "middle": "m"}, "gen4turbo takes no middle image"),
        ("videos", {"model": "gen4"}, {"middle": "m"}, "videos takes no middle image"),
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
            "videos does not take 'seconds' (its video length is 'duration')",
        ),
        ("gen3turbo", {"duration": 5}, {}, "gen3turbo does not take 'duration' (its video"),
        (
            "videos",
            {"duration": 5},
            {"first": "f"},
            "videos needs the field 'model' (the vendor's video model, e.g. gen4-turbo: "
            "--video-model / video_model)",
        ),
        ("videos", {"model": "gen4", "prompt": "x"}, {}, "videos does not take 'prompt'"),
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
    with pytest.raises(InvalidSubmission) as caught:
        check("videos", {"model": "gen4-turbo", "colour": "red"}, {})
    listed = str(caught.value).rsplit("its fields: ", 1)[1].split(", ")
    assert listed == [
        "model",
        "text_prompt",
        "aspect_ratio",
        "duration",
        "seed",
        "explore_mode",
        "max_jobs",
    ]


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
    assert "--video-model is for --model videos only, not gen3turbo" in result.output
    assert not (tmp_path / "never-created.sqlite3").exists()
