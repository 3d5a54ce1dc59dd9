"""``relay submit``, ``relay models`` and ``relay accounts``: the commands that talk about models
and accounts. Registered on :data:`receiver.cli.main`; the help of ``--model`` and the output of
``relay models`` are made from the one table, :data:`client.catalog.VIDEO_MODELS`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click
from pydantic import ValidationError

from client.catalog import (
    DEFAULT_MODEL,
    ENDPOINT_MODELS,
    RETIRED_ADVICE,
    SOURCE,
    UNLISTED_MODELS,
    VIDEO_MODELS,
    VideoModel,
)
from client.errors import UseapiError
from client.images import ImageError
from client.replyref import ReplyRefTooLong
from receiver import idempotency, submission
from receiver.cli import Context, _emit, _fail, main, pass_ctx
from receiver.errors import InvalidSubmission, SubmissionFailed
from receiver.settings import ConfigError

#: ``relay submit``'s option for each ``POST /api/tasks`` field (receiver.submission's messages
#: name inputs by these; the service knows only the API's names).
CLI_NAMES = {
    "image": "--image",
    "middle_image": "--middle-image",
    "last_image": "--last-image",
    "reference_images": "--reference-image",
    "model": "--model",
    "video_model": "--video-model",
}


def _range(values: tuple[int, ...]) -> str:
    if len(values) > 3 and list(values) == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return ",".join(str(v) for v in values)


def model_line(spec: VideoModel) -> str:
    """One model of the table in one line (``--help`` and ``relay models``)."""
    images = (
        f"{spec.min_images}-{spec.max_images}"
        if spec.min_images != spec.max_images
        else f"{spec.min_images} (required)"
    )
    prompt = "required" if spec.prompt_required else "optional"
    if spec.prompt_max:
        prompt += f" <= {spec.prompt_max}"
    parts = [
        f"{spec.name}: {_range(spec.durations)} s",
        f"ratios {','.join(spec.aspect_ratios) or '-'}"
        + (
            f" (without an image: {','.join(spec.text_aspect_ratios)})"
            if spec.text_aspect_ratios and spec.text_aspect_ratios != spec.aspect_ratios
            else ""
        ),
        f"images {images}",
        f"prompt {prompt}",
    ]
    if spec.resolutions:
        parts.append(f"resolution {','.join(spec.resolutions)}")
    if spec.audio:
        parts.append(f"audio {spec.audio}")
    if spec.explore_mode:
        parts.append("exploreMode")
    return "; ".join(parts)


def _model_help() -> str:
    listed = ", ".join(VIDEO_MODELS)
    return (
        f"the vendor's model name (default {DEFAULT_MODEL}): {listed} go to POST /videos/create "
        "and are checked against runway-relay's table (`relay models`); any other name (e.g. "
        f"{UNLISTED_MODELS[0]}) is passed through with a warning; gen3turbo (Gen-3 Alpha Turbo, "
        "retired by Runway) and gen4turbo use their own endpoints. `--model videos "
        "--video-model NAME` is an alias"
    )


def _submit_epilog() -> str:
    lines = [f"\b\nModels of POST /videos/create ({SOURCE}):"]
    lines += [f"  {model_line(spec)}" for spec in VIDEO_MODELS.values()]
    return "\n".join(lines)


def _option_pairs(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--option")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@main.command(epilog=_submit_epilog())
@click.option("--image", "image", help="first frame: a file path, an https URL or a data: URI")
@click.option("--middle-image", help="middle frame (gen3turbo)")
@click.option("--last-image", help="last frame (gen3turbo; kling-3.0-*; seedance-2's end frame)")
@click.option(
    "--reference-image",
    "reference_images",
    multiple=True,
    help="seedance-2 reference image (repeatable, up to 11: imageAssetId1..11)",
)
@click.option("--prompt", help="text prompt (some models require it; see below)")
@click.option("--model", help=_model_help())
@click.option("--video-model", help="with --model videos: the vendor's model (alias of --model)")
@click.option(
    "--account",
    help="the useapi.net account (its email) that uploads and generates; default "
    "USEAPI_ACCOUNT_EMAIL; required by the vendor when several accounts are configured",
)
@click.option(
    "--seconds",
    "--duration",
    "seconds",
    type=int,
    help="video length in seconds, sent as the model's own field: duration (videos/create "
    "models, see below) or seconds (gen3turbo, gen4turbo: 5 or 10)",
)
@click.option(
    "--aspect-ratio",
    help="gen3turbo: landscape|portrait; the others: 16:9, 9:16, 1:1, 4:3, 3:4, 21:9 (per model)",
)
@click.option("--resolution", help="videos/create models that take it, e.g. 720p (seedance-2)")
@click.option("--seed", type=int, help="1…4294967294")
@click.option(
    "--explore-mode/--no-explore-mode", default=None, help="relaxed generation (Unlimited plans)"
)
@click.option("--max-jobs", type=int, help="1…10")
@click.option(
    "--option", "options", multiple=True, help="any other request field, KEY=VALUE (repeatable)"
)
@click.option("--metadata", help="a JSON object of your own, echoed in every webhook")
@click.option(
    "--idempotency-key",
    help="submit at most once per key: run again with the same key and options, it prints "
    "the first job (no second upload or create); other options with that key are refused",
)
@pass_ctx
def submit(
    ctx: Context,
    image: str | None,
    middle_image: str | None,
    last_image: str | None,
    reference_images: tuple[str, ...],
    prompt: str | None,
    model: str | None,
    video_model: str | None,
    account: str | None,
    seconds: int | None,
    aspect_ratio: str | None,
    resolution: str | None,
    seed: int | None,
    explore_mode: bool | None,
    max_jobs: int | None,
    options: tuple[str, ...],
    metadata: str | None,
    idempotency_key: str | None,
) -> None:
    """Upload the image(s), record the job and create the vendor task.

    Prints one JSON object with job_id, task_id, status, model, endpoint and account. The
    vendor then pushes progress to PUBLIC_BASE_URL/callbacks/useapi; nothing here polls. Exit
    status 1 when the vendor refuses (the job is kept, SUBMIT_FAILED), 2 for bad input or
    configuration.
    """
    settings = ctx.settings
    try:
        target = submission.resolve_model(model, video_model, names=CLI_NAMES)
    except InvalidSubmission as exc:
        _fail(f"invalid request: {exc}", 2)
    length_field = "duration" if target.kind == "videos" else "seconds"
    params: dict[str, Any] = {
        "text_prompt": prompt,
        length_field: seconds,
        "aspect_ratio": aspect_ratio,
        "resolution": resolution,
        "seed": seed,
        "explore_mode": explore_mode,
        "max_jobs": max_jobs,
    }
    params = {k: v for k, v in params.items() if v is not None}
    params.update(_option_pairs(options))
    meta: dict[str, Any] = {}
    if metadata:
        try:
            meta = json.loads(metadata)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from None
        if not isinstance(meta, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--metadata")
    images = submission.image_slots(image, middle_image, last_image)
    account = account or settings.useapi_account_email
    try:  # checked here too, so that the message names our options, not the API's fields
        submission.check_inputs(target, params, images, reference_images, names=CLI_NAMES)
    except InvalidSubmission as exc:
        _fail(f"invalid request: {exc}", 2)
    try:
        reply_url = settings.reply_url
        rt = ctx.runtime
        client = rt.vendor_client()
    except ConfigError as exc:
        _fail(str(exc), 2)
    if target.warning:
        click.echo(f"warning: {target.warning}", err=True)
    click.echo(
        f"submitting a {target.name} task on POST {target.endpoint} "
        f"({len(images) + len(reference_images)} image(s)"
        + (f", account {account})…" if account else ")…"),
        err=True,
    )
    order = submission.Submission(
        model=target.name,
        params=params,
        images=images,
        metadata=meta,
        account=account,
        references=reference_images,
    )
    # At most once per --idempotency-key (receiver.idempotency), the order's fields being the
    # request whose fingerprint is compared; as before without one.
    request = dataclasses.asdict(order)
    submit_task = idempotency.once(rt.engine, idempotency_key, request)(submission.submit_task)
    try:
        job = submission.submit_with(rt, client, order, reply_url=reply_url, submit=submit_task)
    except idempotency.IdempotencyError as exc:
        _fail(str(exc), 2 if isinstance(exc, idempotency.IdempotencyKeyReused) else 1)
    except ValidationError as exc:
        from receiver.web.errors import validation_message

        _fail(f"invalid request: {validation_message(exc)}", 2)
    except InvalidSubmission as exc:
        _fail(f"invalid request: {exc}", 2)
    except (ReplyRefTooLong, ImageError) as exc:
        _fail(str(exc), 2)
    except SubmissionFailed as exc:
        cause: UseapiError = exc.cause
        out = {"job_id": exc.job_id, "task_id": None, "status": "SUBMIT_FAILED"}
        _emit({**out, "model": target.name, "endpoint": target.endpoint, "error": str(cause)})
        advice = f"\n{exc.advice}" if exc.advice else ""
        _fail(f"{type(cause).__name__}: {cause}{advice}", 1)
    _emit(
        {
            "job_id": job.id,
            "task_id": job.task_id,
            "status": job.status,
            "model": job.model,
            "endpoint": target.endpoint,
            "account": account,
        }
    )


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="the table as JSON")
def models(as_json: bool) -> None:
    """The video models runway-relay knows, from its one table (the source is printed).

    Each POST /videos/create model with its durations, aspect ratios, resolutions, reference
    images, prompt rules, audio and exploreMode; then the models passed through unchecked and
    the two dedicated endpoints. No network call.
    """
    if as_json:
        _emit(
            {
                "source": SOURCE,
                "default": DEFAULT_MODEL,
                "models": [spec.to_json() for spec in VIDEO_MODELS.values()],
                "unlisted": list(UNLISTED_MODELS),
                "endpoints": ENDPOINT_MODELS,
            }
        )
        return
    click.echo(f"Models of POST /videos/create (default {DEFAULT_MODEL})")
    click.echo(f"source: {SOURCE}\n")
    for spec in VIDEO_MODELS.values():
        click.echo(f"{spec.name}  ({spec.label})")
        click.echo(f"  duration (s)       {_range(spec.durations)}")
        ratios = ", ".join(spec.aspect_ratios) or "-"
        text = ", ".join(spec.text_aspect_ratios) or "- (needs an image)"
        click.echo(f"  aspect_ratio       with an image: {ratios}; without: {text}")
        click.echo(f"  resolution         {', '.join(spec.resolutions) or '-'}")
        fields = ", ".join(spec.image_fields[:2])
        if len(spec.image_fields) > 2:
            fields = f"{spec.image_fields[0]}..{spec.image_fields[-1]}"
        click.echo(f"  reference images   {spec.min_images}-{spec.max_images} ({fields})")
        if spec.keyframe_fields:
            click.echo(f"  keyframes          {', '.join(spec.keyframe_fields)}")
        prompt = "required" if spec.prompt_required else "optional"
        limit = f", at most {spec.prompt_max} characters" if spec.prompt_max else ""
        click.echo(f"  text_prompt        {prompt}{limit}")
        click.echo(f"  audio              {spec.audio or '-'}")
        click.echo(f"  exploreMode        {'yes' if spec.explore_mode else 'not documented'}")
        if spec.note:
            click.echo(f"  note               {spec.note}")
    click.echo(
        f"\nPassed through unchecked (with a warning): {', '.join(UNLISTED_MODELS)}, and any "
        "other name."
    )
    click.echo(
        "Own endpoints: gen3turbo (POST /gen3turbo/create; " + RETIRED_ADVICE + "), gen4turbo "
        "(POST /gen4turbo/create)."
    )


@main.command("accounts")
@pass_ctx
def accounts(ctx: Context) -> None:
    """List the Runway accounts configured at useapi.net (GET /accounts), as JSON.

    An account with a pending error cannot generate until it is fixed at useapi.net; it is
    flagged ("ok": false) and named on stderr, and the exit status is then 1.
    USEAPI_ACCOUNT_EMAIL, when set, is marked "default".
    """
    try:
        client = ctx.runtime.vendor_client()
    except ConfigError as exc:
        _fail(str(exc), 2)
    default = ctx.settings.useapi_account_email
    try:
        with client:
            found = client.list_accounts()
    except UseapiError as exc:
        _fail(f"{type(exc).__name__}: {exc}", 1)
    rows = [
        {
            "email": item["email"],
            "ok": item["error"] is None,
            "error": item["error"],
            "default": item["email"] == default,
        }
        for item in found
    ]
    _emit(rows)
    broken = [row["email"] for row in rows if not row["ok"]]
    for email in broken:
        click.echo(
            f"warning: account {email} has a pending error; fix it at useapi.net "
            f"(POST /accounts/{email}) before it can generate",
            err=True,
        )
    if default and default not in {row["email"] for row in rows}:
        click.echo(f"warning: USEAPI_ACCOUNT_EMAIL {default} is not among them", err=True)
        broken.append(default)
    if broken:
        raise SystemExit(1)
