"""The simulator's own copy of useapi.net's documented facts, as data.

Copied by hand from the vendor notes (``useapi-2026.md``: useapi.net page
"POST /v1/runwayml/videos/create", March 5, 2026, updated April 15 and May 14, 2026; script
``runwayml.mjs`` v3.1, June 2026), NOT from runway-relay's client, so the simulator checks what
the vendor documents rather than what our client happens to send. A test compares this copy
with the client's table (``client/catalog.py``): if either drifts, it fails.

Each row: ``durations`` (seconds), ``ratios`` (with a start image), ``text_ratios`` (without
one), ``resolutions``, ``images`` (least, most reference images), ``image_fields``,
``keyframe_fields`` (Seedance), ``video_fields`` (Seedance), ``prompt_required``,
``prompt_max`` (characters, or None), ``explore_mode`` (takes ``exploreMode``), ``task_type``
(the task object's ``taskType``).
"""

from __future__ import annotations

from typing import Any

ALL_RATIOS = ["16:9", "9:16", "1:1", "4:3", "3:4", "21:9"]

#: Fields every ``/videos/create`` model takes (the account, the callback trio, …).
COMMON_VIDEO_FIELDS = ["model", "email", "text_prompt", "seed", "replyUrl", "replyRef", "maxJobs"]

# Rows the page gives twice but for the task type: Gen-4 Turbo takes what Gen-4 takes, Kling 3.0
# Standard what Kling 3.0 Pro takes. Kling 2.6 image to video takes what Kling 2.6 Pro takes but
# for aspect_ratio and resolution (none), and its one image is required.
_GEN4: dict[str, Any] = {
    "task_type": "gen4",
    "durations": [5, 10],
    "ratios": ALL_RATIOS,
    "text_ratios": [],
    "resolutions": ["720p"],
    "images": [1, 1],
    "image_fields": ["imageAssetId1"],
    "keyframe_fields": [],
    "video_fields": [],
    "prompt_required": True,
    "prompt_max": 1000,
    "explore_mode": True,
}
_KLING_3_PRO: dict[str, Any] = {
    "task_type": "kling-3.0-pro",
    "durations": [5, 10, 15],
    "ratios": ["16:9", "9:16", "1:1"],
    "text_ratios": ["16:9", "9:16", "1:1"],
    "resolutions": ["auto"],
    "images": [0, 2],
    "image_fields": ["imageAssetId1", "imageAssetId2"],
    "keyframe_fields": [],
    "video_fields": [],
    "prompt_required": False,
    "prompt_max": 2500,
    "explore_mode": False,
}
_KLING_2_6_PRO: dict[str, Any] = {
    "task_type": "kling-2.6-pro",
    "durations": [5, 10],
    "ratios": ["16:9", "9:16"],
    "text_ratios": ["16:9", "9:16"],
    "resolutions": ["auto"],
    "images": [0, 1],
    "image_fields": ["imageAssetId1"],
    "keyframe_fields": [],
    "video_fields": [],
    "prompt_required": True,
    "prompt_max": 2500,
    "explore_mode": False,
}

VIDEO_MODEL_FACTS: dict[str, dict[str, Any]] = {
    "gen4.5": {
        "task_type": "gen4.5",
        "durations": [2, 3, 4, 5, 6, 7, 8, 9, 10],
        "ratios": ALL_RATIOS,
        "text_ratios": ["16:9"],
        "resolutions": [],
        "images": [0, 1],
        "image_fields": ["imageAssetId1"],
        "keyframe_fields": [],
        "video_fields": [],
        "prompt_required": False,
        "prompt_max": 5000,
        "explore_mode": True,
    },
    "gen4": _GEN4,
    "gen4-turbo": {**_GEN4, "task_type": "gen4_turbo"},
    "kling-3.0-pro": _KLING_3_PRO,
    "kling-3.0-standard": {**_KLING_3_PRO, "task_type": "kling-3.0-standard"},
    "kling-2.6-pro": _KLING_2_6_PRO,
    "kling-2.6-i2v": {
        **_KLING_2_6_PRO,
        "task_type": "kling-2.6-i2v",
        "ratios": [],
        "text_ratios": [],
        "resolutions": [],
        "images": [1, 1],
    },
    "seedance-2": {
        "task_type": "seedance-2",
        "durations": list(range(4, 16)),
        "ratios": ALL_RATIOS,
        "text_ratios": ALL_RATIOS,
        "resolutions": ["480p", "720p", "1080p"],
        "images": [0, 11],
        "image_fields": [f"imageAssetId{i}" for i in range(1, 12)],
        "keyframe_fields": ["startFrameAssetId", "endFrameAssetId"],
        "video_fields": ["videoAssetId1", "videoAssetId2", "videoAssetId3"],
        "prompt_required": False,
        "prompt_max": None,
        "explore_mode": False,
    },
}


def video_fields(facts: dict[str, Any]) -> frozenset[str]:
    """Every field a model's row lets through (the common ones included)."""
    names = set(COMMON_VIDEO_FIELDS)
    if facts["durations"]:
        names.add("duration")
    if facts["ratios"] or facts["text_ratios"]:
        names.add("aspect_ratio")
    if facts["resolutions"]:
        names.add("resolution")
    if facts["explore_mode"]:
        names.add("exploreMode")
    names.update(facts["image_fields"], facts["keyframe_fields"], facts["video_fields"])
    return frozenset(names)
