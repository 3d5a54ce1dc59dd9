"""What the benchmarks feed the relay: jobs in its database and callbacks signed for them.

Every callback of the ingest and end-to-end benchmarks is valid and moves its task forward: it
carries a ``replyRef`` signed with the stack's ``SECRET_KEY`` for a job that exists (created
here, as ``relay submit`` leaves it: ``PENDING`` with the vendor ``taskId`` bound), and the
stages of one job go ``RUNNING 0.33 → RUNNING 0.67 → SUCCEEDED``. Files list the bodies
stage-major (every job's first stage, then every job's second, …), so the two callbacks of one
job are thousands of requests apart and never overtake each other among a few connections.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from client.replyref import ReplyRefSigner
from receiver.ids import new_id
from receiver.store.repositories import Delivery, Event, Job, Repository
from receiver.store.repositories.rows import as_values
from receiver.store.tables import attempts, callbacks, deliveries, events, jobs

#: (status, progressRatio) of each callback of one job; the ratio is sometimes a string, as the
#: vendor sends it.
STAGES: tuple[tuple[str, str | float], ...] = (
    ("RUNNING", "0.33"),
    ("RUNNING", 0.67),
    ("SUCCEEDED", "1"),
)


@dataclass(frozen=True)
class BenchJob:
    """A job created for the benchmark: our id, the vendor's task id and the signed replyRef."""

    job_id: str
    task_uuid: str
    reply_ref: str

    @property
    def task_id(self) -> str:
        return f"user:1234-runwayml:bench@example.com-task:{self.task_uuid}"


def _bench_job(
    signer: ReplyRefSigner,
    metadata: dict[str, Any],
    *,
    status: str,
    now: datetime,
    last_callback_at: datetime | None = None,
) -> tuple[BenchJob, Job]:
    """A new benchmark job with a bound vendor task id (its ``replyRef`` signed by ``signer``)
    and its row (``created_at`` ``now``; see :meth:`Job.new`)."""
    job_id = new_id("job")
    job = BenchJob(job_id, str(uuid.uuid4()), signer.sign(job_id, metadata))
    row = Job.new(
        job_id=job_id,
        model="gen3turbo",
        request={"text_prompt": "a paper boat in the rain", "seconds": 5},
        metadata=metadata,
        status=status,
        task_id=job.task_id,
        now=now,
        last_callback_at=last_callback_at,
    )
    return job, row


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def create_jobs(
    engine: Engine, signer: ReplyRefSigner, count: int, *, label: str, now: datetime
) -> list[BenchJob]:
    """Insert ``count`` submitted jobs (status PENDING, taskId bound) in one transaction."""
    made: list[BenchJob] = []
    rows: list[dict[str, Any]] = []
    for index in range(count):
        job, row = _bench_job(signer, {"bench": label, "n": index}, status="PENDING", now=now)
        made.append(job)
        rows.append(as_values(row))
    with engine.begin() as conn:
        for start in range(0, len(rows), 2000):
            conn.execute(insert(jobs), rows[start : start + 2000])
    return made


def callback_body(job: BenchJob, stage: int, *, reply_url: str, created: datetime) -> str:
    """The JSON text of stage ``stage`` (index into :data:`STAGES`) of ``job``'s callbacks.

    Shaped like useapi.net's task object (about 1.5 KB, with fields we do not model).
    """
    status, ratio = STAGES[stage]
    updated = created + timedelta(seconds=20 * (stage + 1))
    seed = int(job.task_uuid[:8], 16) % 4294967294 + 1
    artifacts: list[dict[str, Any]] = []
    if status == "SUCCEEDED":
        art = str(uuid.UUID(job.task_uuid[:-4] + "beef"))
        artifacts = [
            {
                "id": art,
                "assetId": f"user:1234-runwayml:bench@example.com-asset:{art}",
                "url": f"https://cdn.example.com/{art}.mp4?sig=0123456789abcdef&expires=1900000000",
                "filename": f"Gen-3 Alpha Turbo {seed}.mp4",
                "fileSize": "1234567",
                "previewUrls": [f"https://cdn.example.com/{art}.jpg"],
                "metadata": {
                    "frameRate": 24,
                    "duration": 5,
                    "dimensions": [1280, 768],
                    "size": {"width": 1280, "height": 768},
                },
            }
        ]
    body = {
        "taskId": job.task_id,
        "id": job.task_uuid,
        "name": f"Gen-3 Alpha Turbo {seed}, a paper boat in the rain",
        "image": None,
        "createdAt": _iso(created),
        "updatedAt": _iso(updated),
        "taskType": "gen3a_turbo",
        "options": {
            "name": f"Gen-3 Alpha Turbo {seed}, a paper boat in the rain",
            "seconds": 5,
            "text_prompt": "a paper boat in the rain",
            "seed": seed,
            "exploreMode": False,
            "watermark": False,
            "enhance_prompt": True,
            "width": 1280,
            "height": 768,
            "flip": False,
            "keyframes": [{"image": "https://cdn.example.com/first.png", "timestamp": 0}],
            "assetGroupName": "Generative Video",
            "recordingEnabled": True,
        },
        "status": status,
        "error": None,
        "progressText": None if status == "SUCCEEDED" else f"Generating ({float(ratio):.0%})",
        "progressRatio": ratio,
        "estimatedTimeToStartSeconds": None,
        "artifacts": artifacts,
        "sharedAsset": None,
        "features": {"storageGB": 500, "numPlanCredits_permitted": 2250},
        "code": 200,
        "replyUrl": reply_url,
        "replyRef": job.reply_ref,
    }
    return json.dumps(body, separators=(",", ":"))


def stage_major(
    made: Sequence[BenchJob], *, reply_url: str, created: datetime
) -> Iterator[tuple[BenchJob, int, str]]:
    """``(job, stage, body)`` for every stage of every job, stage-major."""
    for stage in range(len(STAGES)):
        for job in made:
            yield job, stage, callback_body(job, stage, reply_url=reply_url, created=created)


def write_bodies(path: Path, bodies: Iterator[str]) -> int:
    """Write one body per line (compact JSON has no newline); returns how many."""
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for body in bodies:
            handle.write(body)
            handle.write("\n")
            count += 1
    return count


@dataclass(frozen=True)
class Backlog:
    """``task.progress`` webhook bodies of one job, numbered on from ``first_sequence``.

    ``items``: ``[(event_id, payload JSON)]``, in sequence order.
    """

    job_id: str
    first_sequence: int
    items: list[tuple[str, str]]


def backlog_payloads(count: int, *, job_id: str, now: datetime, first_sequence: int) -> Backlog:
    """``count`` ``task.progress`` webhook bodies of ``job_id``, the first numbered
    ``first_sequence``."""
    made: list[tuple[str, str]] = []
    for index in range(count):
        event_id = new_id("msg")
        payload = {
            "type": "task.progress",
            "timestamp": _iso(now),
            "data": {
                "event_id": event_id,
                "job_id": job_id,
                "task_id": "user:1234-runwayml:bench@example.com-task:fan-out",
                "model": "gen3turbo",
                "status": "RUNNING",
                "progress": round(index / count, 4),
                "progress_text": "Generating",
                "artifacts": [],
                "error": None,
                "metadata": {"bench": "fan-out"},
                "sequence": first_sequence + index,
            },
        }
        made.append((event_id, json.dumps(payload, separators=(",", ":"))))
    return Backlog(job_id, first_sequence, made)


def insert_backlog(engine: Engine, subscriber_id: str, backlog: Backlog, *, now: datetime) -> None:
    """The events of ``backlog`` and one due delivery of each to the subscriber, in one
    transaction, as the applier writes them (with its PostgreSQL ``NOTIFY``)."""
    event_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    items = backlog.items
    for index, (event_id, payload) in enumerate(items):
        sequence = backlog.first_sequence + index
        event = Event(event_id, backlog.job_id, "task.progress", sequence, payload, now)
        event_rows.append(as_values(event))
        delivery_rows.append(as_values(Delivery.new_pending(event_id, subscriber_id, now)))
    with engine.begin() as conn:
        for start in range(0, len(items), 2000):
            conn.execute(insert(events), event_rows[start : start + 2000])
            conn.execute(insert(deliveries), delivery_rows[start : start + 2000])
        Repository(conn).notify_deliveries()  # wake a PostgreSQL worker, as a callback would


#: Rows one finished job leaves behind: the job, and per stage one callback, one event, one
#: delivery and one attempt.
ROWS_PER_FINISHED_JOB = 1 + 4 * len(STAGES)


def seed_expired(
    engine: Engine,
    signer: ReplyRefSigner,
    subscriber_id: str,
    rows: int,
    *,
    finished: datetime,
    reply_url: str,
) -> dict[str, int]:
    """Insert at least ``rows`` rows of finished work, all of it done at ``finished`` (give a
    moment older than ``RETENTION_DAYS``: ``relay purge`` then removes every one of them).

    Each job is ``SUCCEEDED``, with the three callbacks that took it there (applied, with their
    bodies, about 1.5 KB each), one event per callback and, for each event, a delivery to
    ``subscriber_id`` that succeeded on its first attempt: :data:`ROWS_PER_FINISHED_JOB` rows a
    job. Bulk ``INSERT``s of 2,000 rows, one transaction per table.

    :returns: rows inserted, ``{table: rows}`` (jobs, callbacks, events, deliveries, attempts).
    """
    made: dict[str, list[dict[str, Any]]] = {
        "jobs": [],
        "callbacks": [],
        "events": [],
        "deliveries": [],
        "attempts": [],
    }
    for index in range(math.ceil(rows / ROWS_PER_FINISHED_JOB)):
        job, row = _bench_job(
            signer,
            {"bench": "expired", "n": index},
            status="SUCCEEDED",
            now=finished - timedelta(minutes=2),
            last_callback_at=finished,
        )
        job_id = job.job_id
        made["jobs"].append(
            as_values(replace(row, progress=1.0, sequence=len(STAGES), finished_at=finished))
        )
        for stage, (status, ratio) in enumerate(STAGES):
            at = finished - timedelta(seconds=20 * (len(STAGES) - 1 - stage))
            body = callback_body(job, stage, reply_url=reply_url, created=at)
            made["callbacks"].append(
                {
                    "job_id": job_id,
                    "received_at": at,
                    "status": status,
                    "progress": float(ratio),
                    "outcome": "applied",
                    "body": json.loads(body),
                    "body_sha256": hashlib.sha256(body.encode()).hexdigest(),
                    "source_ip": "127.0.0.1",
                    "unsafe_urls": None,
                }
            )
            event_id = new_id("msg")
            kind = "task.succeeded" if status == "SUCCEEDED" else "task.progress"
            payload = {"type": kind, "timestamp": _iso(at), "data": {"job_id": job_id}}
            text = json.dumps(payload, separators=(",", ":"))
            made["events"].append(as_values(Event(event_id, job_id, kind, stage + 1, text, at)))
            delivery = replace(
                Delivery.new_pending(event_id, subscriber_id, at),
                status="succeeded",
                attempts=1,
                last_status_code=204,
                completed_at=at,
            )
            made["deliveries"].append(as_values(delivery))
            made["attempts"].append(
                {
                    "delivery_id": delivery.id,
                    "number": 1,
                    "started_at": at,
                    "duration_ms": 3.0,
                    "status_code": 204,
                    "outcome": "success",
                    "error": None,
                    "response_body": "",
                    "worker": "bench",
                }
            )
    for table in (jobs, callbacks, events, deliveries, attempts):  # parents first (foreign keys)
        with engine.begin() as conn:
            for start in range(0, len(made[table.name]), 2000):
                conn.execute(insert(table), made[table.name][start : start + 2000])
    return {name: len(rows) for name, rows in made.items()}
