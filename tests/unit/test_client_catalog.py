"""The one table of ``/videos/create`` models (client/catalog.py) against the vendor's facts, and
the client against the simulator over real HTTP on loopback:

- the client's table equals the simulator's own copy of the vendor's table (and the vendor notes
  beside the repository, when they are there);
- the contract: for every model of the table the richest request the client can build is
  accepted by the simulator, and the client sends no field the table does not list for it;
- the account (``email``) on uploads, creates and every lookup; ``GET /scheduler/``; a lost
  create answer found there with one create; a wrapped answer read; raw task ids in paths.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from werkzeug.serving import make_server

from client import UseapiClient, VideosCreateRequest
from client.catalog import (
    DEFAULT_MODEL,
    UNLISTED_MODELS,
    VIDEO_MODELS,
    VideoModel,
    check_video_request,
    route,
)
from client.errors import BadRequest
from simulator import SimulatorConfig, create_app, get_state
from simulator.state import SimulatorState
from simulator.vendor_facts import VIDEO_MODEL_FACTS, video_fields
from tests.unit.test_simulator import PNG

TOKEN = "catalog-token"
URL = "http://127.0.0.1:9/callbacks/useapi"
_REPO = Path(__file__).resolve().parents[2]
#: The vendor notes, in ``../shared`` beside a clone (or beside the worktrees' folder).
VENDOR_NOTES = next(
    (
        path
        for path in (
            _REPO.parent / "shared" / "vendor-docs" / "useapi-2026.md",
            _REPO.parent.parent / "shared" / "vendor-docs" / "useapi-2026.md",
        )
        if path.exists()
    ),
    _REPO.parent / "shared" / "vendor-docs" / "useapi-2026.md",
)
A1, A2 = "one@example.com", "two@example.com"


class Vendor:
    """The simulator served on a free loopback port, and a client of it."""

    def __init__(self, **config: Any) -> None:
        app = create_app(SimulatorConfig(token=TOKEN, start_delay=30, **config))
        self.state: SimulatorState = get_state(app)
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.client = UseapiClient(
            TOKEN, base_url=f"http://127.0.0.1:{self.server.server_port}", read_timeout=5
        )

    def close(self) -> None:
        self.client.close()
        self.state.shutdown(timeout=2)
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(2)

    def __enter__(self) -> Vendor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def paths(self) -> list[tuple[str, str, str | None]]:
        return [(r["method"], r["path"], r["email"]) for r in self.state.logged_requests()]


@pytest.fixture
def vendor() -> Iterator[Vendor]:
    with Vendor() as running:
        yield running


@pytest.fixture
def two_accounts() -> Iterator[Vendor]:
    with Vendor(accounts=[A1, A2]) as running:
        yield running


# -- the table against the vendor's facts --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VIDEO_MODELS))
def test_client_table_equals_the_simulators_copy(name: str) -> None:
    spec, facts = VIDEO_MODELS[name], VIDEO_MODEL_FACTS[name]
    assert spec.durations == tuple(facts["durations"])
    assert spec.aspect_ratios == tuple(facts["ratios"])
    assert spec.text_aspect_ratios == tuple(facts["text_ratios"])
    assert spec.resolutions == tuple(facts["resolutions"])
    assert (spec.min_images, spec.max_images) == tuple(facts["images"])
    assert spec.image_fields == tuple(facts["image_fields"])
    assert spec.keyframe_fields == tuple(facts["keyframe_fields"])
    assert spec.video_fields == tuple(facts["video_fields"])
    assert (spec.prompt_required, spec.prompt_max) == (
        facts["prompt_required"],
        facts["prompt_max"],
    )
    assert spec.explore_mode == facts["explore_mode"]
    assert set(spec.fields) == video_fields(facts)


def test_both_tables_hold_the_same_models() -> None:
    assert set(VIDEO_MODELS) == set(VIDEO_MODEL_FACTS)
    assert DEFAULT_MODEL == "gen4.5" and next(iter(VIDEO_MODELS)) == DEFAULT_MODEL


@pytest.mark.skipif(not VENDOR_NOTES.exists(), reason=f"{VENDOR_NOTES} is not beside the repo")
def test_table_follows_the_vendor_notes() -> None:
    notes = VENDOR_NOTES.read_text(encoding="utf-8")
    named = re.search(r"Models named on the page: (.+?)\.\n\n", notes, re.S)
    assert named is not None
    on_page = set(re.findall(r"`([^`]+)`", named.group(1)))
    assert on_page == set(VIDEO_MODELS) | set(UNLISTED_MODELS)
    rows = re.findall(r"^\| ([a-z0-9.\-, ]+) \| (.+) \|$", notes, re.M)
    checked = 0
    for names, rest in rows:
        limit = re.search(r"≤ (\d+) chars", rest)
        for name in names.split(", "):
            if name in VIDEO_MODELS:
                spec = VIDEO_MODELS[name]
                assert spec.prompt_max == (int(limit.group(1)) if limit else None), name
                assert ("required" in rest.split("|")[-1]) == spec.prompt_required, name
                checked += 1
    assert checked == len(VIDEO_MODELS)


# -- the contract: what the client sends, the simulator takes ------------------------------------


def richest(spec: VideoModel, asset: str) -> dict[str, Any]:
    """Every field the row lets the client set, with an allowed value."""
    fields: dict[str, Any] = {"model": spec.name, "text_prompt": "x", "seed": 7, "max_jobs": 1}
    if spec.keyframe_fields:
        fields.update(start_frame_asset_id=asset, end_frame_asset_id=asset)
    elif spec.max_images >= 2:
        fields.update(first_image_asset_id=asset, last_image_asset_id=asset)
    elif spec.max_images == 1:
        fields["first_image_asset_id"] = asset
    if spec.durations:
        fields["duration"] = spec.durations[-1]
    if spec.aspect_ratios:
        fields["aspect_ratio"] = spec.aspect_ratios[-1]
    if spec.resolutions:
        fields["resolution"] = spec.resolutions[-1]
    if spec.explore_mode:
        fields["explore_mode"] = True
    return fields


@pytest.mark.parametrize("name", sorted(VIDEO_MODELS))
def test_contract_every_model_accepted_and_only_listed_fields_sent(
    vendor: Vendor, name: str
) -> None:
    spec = VIDEO_MODELS[name]
    asset = vendor.client.upload_asset(PNG, name="f.png")
    request = VideosCreateRequest.model_validate(richest(spec, asset))
    task = vendor.client.create(request, reply_url=URL, reply_ref="r")
    assert task.taskId
    [logged] = vendor.state.logged_creates("videos")
    sent = set(logged["body"])
    assert sent <= video_fields(VIDEO_MODEL_FACTS[name]), sent - video_fields(
        VIDEO_MODEL_FACTS[name]
    )


def test_seedance_references_go_in_image_asset_ids(vendor: Vendor) -> None:
    asset = vendor.client.upload_asset(PNG, name="f.png")
    request = VideosCreateRequest(model="seedance-2", reference_asset_ids=(asset,) * 3)
    assert vendor.client.create(request, reply_url=URL, reply_ref="r").taskId
    body = vendor.state.logged_creates("videos")[0]["body"]
    assert [k for k in body if k.startswith("imageAssetId")] == [
        "imageAssetId1",
        "imageAssetId2",
        "imageAssetId3",
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "gen4.5", "resolution": "720p"}, "gen4.5 does not take resolution; it takes:"),
        ({"model": "gen4.5", "duration": 1}, "duration 1 is not allowed; allowed: 2..10"),
        ({"model": "gen4.5", "aspect_ratio": "1:1"}, "not allowed without an image; allowed: 16:9"),
        (
            {"model": "gen4", "imageAssetId1": "a", "text_prompt": "x", "aspect_ratio": "5:4"},
            "allowed: 16:9, 9:16, 1:1, 4:3, 3:4, 21:9",
        ),
        ({"model": "gen4", "text_prompt": "x"}, "gen4 needs 1 reference image(s) in imageAssetId1"),
        ({"model": "gen4-turbo", "imageAssetId1": "a"}, "gen4-turbo needs text_prompt"),
        ({"model": "kling-3.0-pro", "text_prompt": "x" * 2501}, "at most 2500"),
        ({"model": "kling-2.6-pro", "imageAssetId2": "a", "text_prompt": "x"}, "imageAssetId2"),
        ({"model": "seedance-2", "resolution": "4k"}, "allowed: 480p, 720p, 1080p"),
        ({"model": "seedance-2", "startFrameAssetId": "a", "imageAssetId1": "b"}, "mixed"),
        ({"model": "seedance-2", "endFrameAssetId": "a"}, "endFrameAssetId needs"),
        ({"model": "seedance-2", "imageAssetId2": "a"}, "without gaps"),
    ],
)
def test_check_names_the_field_and_the_allowed_values(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_video_request(fields["model"], fields)
    assert message in str(caught.value)


def test_an_unlisted_model_passes_with_a_warning() -> None:
    check_video_request("veo-3.1", {"model": "veo-3.1", "anything": 1})  # the vendor decides
    target = route("veo-3.1")
    assert (target.endpoint, target.vendor_model, target.listed) == (
        "/videos/create",
        "veo-3.1",
        False,
    )
    assert target.warning and "passed through" in target.warning


def test_routes() -> None:
    assert (route(None).name, route(None).endpoint) == ("gen4.5", "/videos/create")
    assert route("gen3turbo").endpoint == "/gen3turbo/create" and route("gen3turbo").retired
    assert route("gen4turbo").endpoint == "/gen4turbo/create"
    assert route("gen4-turbo").endpoint == "/videos/create"
    with pytest.raises(ValueError):
        route("videos")
    with pytest.raises(ValidationError):
        VideosCreateRequest(model="gen4.5", duration=12)


# -- accounts, scheduler, answers -----------------------------------------------------------------


def test_email_goes_on_upload_create_and_every_lookup(two_accounts: Vendor) -> None:
    client = two_accounts.client
    with pytest.raises(BadRequest, match="email is required"):
        client.upload_asset(PNG, name="f.png")
    asset = client.upload_asset(PNG, name="f.png", email=A2)
    request = VideosCreateRequest(model="gen4.5", first_image_asset_id=asset, email=A2)
    task = client.create(request, reply_url=URL, reply_ref="ref-1")
    assert task.taskId and f"-runwayml:{A2}-task:" in task.taskId
    assert client.get_task(task.taskId, email=A2).status == "PENDING"
    assert [e.replyRef for e in client.list_scheduler(email=A2)] == ["ref-1"]
    client.cancel(task.taskId, email=A2)
    with pytest.raises(BadRequest):
        client.list_scheduler()
    assert two_accounts.paths()[1:] == [
        ("POST", "/assets/", A2),
        ("POST", "/videos/create", A2),
        ("GET", f"/tasks/{task.taskId}", A2),
        ("GET", "/scheduler/", A2),
        ("DELETE", f"/scheduler/{task.taskId}", A2),
        ("GET", "/scheduler/", None),
    ]


def test_lost_create_answer_found_in_scheduler_with_its_account(two_accounts: Vendor) -> None:
    client = two_accounts.client
    two_accounts.state.push_outcomes([_outcome("drop_connection")])
    request = VideosCreateRequest(model="gen4.5", text_prompt="t", email=A1)
    task = client.create(request, reply_url=URL, reply_ref="lost-ref")
    assert task.taskId and task.replyRef == "lost-ref"
    assert two_accounts.paths() == [
        ("POST", "/videos/create", A1),
        ("GET", "/scheduler/", A1),
    ]
    assert two_accounts.state.stats()["tasks_created"] == 1


def test_wrapped_answer_is_read(vendor: Vendor) -> None:
    vendor.state.push_outcomes([_outcome("wrapped")])
    task = vendor.client.create(
        VideosCreateRequest(model="gen4.5", text_prompt="t"), reply_url=URL, reply_ref="w"
    )
    assert task.taskId and task.status == "PENDING"
    assert vendor.state.stats()["scheduler_requests"] == 0


def test_task_ids_go_raw_into_paths(vendor: Vendor) -> None:
    task = vendor.client.create(
        VideosCreateRequest(model="gen4.5", text_prompt="t"), reply_url=URL, reply_ref="p"
    )
    assert task.taskId and ":" in task.taskId and "@" in task.taskId
    # the simulator answers 404 when ':' or '@' arrive percent-encoded
    assert vendor.client.get_task(task.taskId).taskId == task.taskId


def test_list_accounts_flags_errors() -> None:
    with Vendor(accounts=[A1, A2], account_errors={A1: "session expired"}) as running:
        accounts = running.client.list_accounts()
    assert [(a["email"], a["error"]) for a in accounts] == [(A1, "session expired"), (A2, None)]


def _outcome(kind: str) -> Any:
    from simulator.state import QueuedOutcome

    return QueuedOutcome(kind=kind)


def test_readme_models_section_is_the_table() -> None:
    from client.catalog import markdown_table

    readme = (_REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Models\n", 1)[1].split("\n## ", 1)[0]
    assert markdown_table() in section
    assert "Runway retired\n  Gen-3 Alpha Turbo on 2026-07-30" in section
