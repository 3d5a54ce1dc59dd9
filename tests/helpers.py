"""Helpers shared by several test modules (fixtures stay in the ``conftest.py`` files)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine

from receiver.ids import new_id
from receiver.store.repositories import Job
from receiver.store.uow import UnitOfWork


def add_job(
    engine: Engine,
    *,
    task_id: str | None,
    created: datetime,
    status: str = "PENDING",
    model: str = "gen3turbo",
    request: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    last_callback: datetime | None = None,
) -> Job:
    """Store a job as if it had been submitted at ``created`` and return it.

    Args:
        engine: the receiver's database.
        task_id: the vendor's task id, or None (a job still SUBMITTING).
        created: when the job was made (aware UTC); also its ``updated_at`` unless
            ``last_callback`` is given.
        status: the job's status (``PENDING`` by default).
        model: the model name the job asked for.
        request: the stored request (``{"text_prompt": "test"}`` when None).
        metadata: the caller's metadata (``{}`` when None; copied).
        last_callback: when its last callback came, or None (never).
    """
    job = Job(
        id=new_id("job"),
        model=model,
        request={"text_prompt": "test"} if request is None else request,
        metadata=dict(metadata or {}),
        status=status,
        task_id=task_id,
        progress=None,
        progress_text=None,
        artifacts=[],
        error=None,
        submit_error=None,
        sequence=0,
        created_at=created,
        updated_at=last_callback or created,
        last_callback_at=last_callback,
        finished_at=None,
    )
    with UnitOfWork(engine) as uow:
        uow.repo.add_job(job)
        uow.commit()
    return job


def post_callback(client: FlaskClient, body: Any, **kw: Any) -> Any:
    """POST ``body`` to ``/callbacks/useapi`` through the Flask test client.

    Args:
        client: the receiver's test client.
        body: bytes or str sent as they are; anything else sent as its JSON.
        kw: passed to ``client.post`` (``content_type`` is ``application/json`` unless given).

    Returns:
        The test client's response.
    """
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    kw.setdefault("content_type", "application/json")
    return client.post("/callbacks/useapi", data=data, **kw)
