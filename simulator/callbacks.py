"""Posting task objects to a task's ``replyUrl``, the way useapi.net pushes progress.

Each task with a ``replyUrl`` gets one background thread (:func:`start_task`) that walks the task
through its planned states and POSTs them as JSON. Every attempt is recorded in the state. The
vendor is not known to retry a failed callback, so by default neither does the simulator
(``callback_retries``). Redirects are not followed: a 3xx counts as a failed attempt.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import requests

from simulator.state import CallbackAttempt, SimulatorState
from simulator.tasks import TaskPlan, isoformat

logger = logging.getLogger(__name__)

USER_AGENT = "runway-relay-simulator/1 (useapi.net look-alike)"


def post_callback(
    state: SimulatorState,
    task_id: str,
    url: str,
    body: dict[str, Any],
    *,
    timeout: float,
    retries: int = 0,
    retry_delay: float = 0.0,
    extra: bool = False,
) -> CallbackAttempt:
    """POST ``body`` as JSON to ``url`` (query string kept as given), retrying up to ``retries``
    times after a failure; returns the last attempt. Never raises for network errors.

    ``timeout`` and ``retry_delay`` are in seconds; ``extra`` marks a callback asked for through
    ``POST /_sim/tasks/<taskId>/callback``.
    """
    attempt: CallbackAttempt | None = None
    for number in range(1, retries + 2):
        started = time.monotonic()
        at = isoformat(datetime.now(UTC))
        http_status: int | None = None
        error: str | None = None
        try:
            with requests.Session() as session:
                session.trust_env = False  # never route loopback callbacks through a proxy
                response = session.post(
                    url,
                    json=body,
                    timeout=timeout,
                    allow_redirects=False,
                    headers={"User-Agent": USER_AGENT},
                )
                http_status = response.status_code
                response.close()
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempt = CallbackAttempt(
            task_id=task_id,
            url=url,
            task_status=str(body.get("status")) if body.get("status") is not None else None,
            attempt=number,
            http_status=http_status,
            error=error,
            at=at,
            elapsed=round(time.monotonic() - started, 4),
            extra=extra,
        )
        state.record_attempt(attempt)
        logger.info(
            "callback task=%s status=%s attempt=%d -> %s",
            task_id,
            attempt.task_status,
            number,
            http_status if error is None else error,
        )
        if attempt.ok or number > retries or state.stop_event.wait(retry_delay):
            break
    assert attempt is not None
    return attempt


def send_order(states: list[dict[str, Any]], plan: TaskPlan, state: SimulatorState) -> list[Any]:
    """The order in which the task's states are posted.

    Without ``shuffle`` that is the natural order. With it, a random permutation in which the
    terminal state is never last (so it always overtakes at least one progress post). With
    ``duplicate_terminal`` the terminal state is posted once more at the end.
    """
    order = list(states)
    if plan.shuffle and len(order) >= 2:
        state.rng.shuffle(order)
        if order[-1] is states[-1]:
            swap = state.rng.randrange(len(order) - 1)
            order[swap], order[-1] = order[-1], order[swap]
    if plan.duplicate_terminal:
        order.append(states[-1])
    return order


def start_task(
    state: SimulatorState,
    task_id: str,
    states: list[dict[str, Any]],
    plan: TaskPlan,
    reply_url: str | None,
) -> None:
    """Walk a task through ``states`` on the plan's timetable, posting each step to ``reply_url``,
    in a daemon thread remembered by the state.

    The task's own state (what ``GET /tasks`` shows) always advances in natural order; only the
    posts are reordered or repeated. Posts stop after ``DELETE /scheduler/<taskId>``; the loop ends
    early when the app shuts down or ``POST /_sim/reset`` forgets the task.
    """

    def run() -> None:
        try:
            outgoing = send_order(states, plan, state)
            lived = list(states) + [states[-1]] * (len(outgoing) - len(states))
            for index, (current, body) in enumerate(zip(lived, outgoing, strict=True)):
                delay = plan.start_delay if index == 0 else plan.step_delay
                if state.stop_event.wait(delay) or state.get_task(task_id) is None:
                    return
                state.set_task(current)
                if reply_url and state.is_tracked(task_id):
                    post_callback(
                        state,
                        task_id,
                        reply_url,
                        body,
                        timeout=plan.callback_timeout,
                        retries=plan.callback_retries,
                        retry_delay=plan.callback_retry_delay,
                    )
        except Exception:  # a crashed thread must not take the simulator down
            logger.exception("simulated task %s stopped unexpectedly", task_id)

    state.start_thread(run, name=f"sim-task-{task_id.rsplit(':', 1)[-1][:8]}")
