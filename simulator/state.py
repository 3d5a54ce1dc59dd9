"""Everything one simulator app remembers: config, assets, tasks, queue, counters, callbacks.

All of it lives in one :class:`SimulatorState` built by :func:`simulator.app.create_app`; there is
no module-level mutable state. Every method takes the state's lock, and task objects are
deep-copied on the way in and out, so request threads and callback threads never share a
mutable dict.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, get_args

from simulator.config import SimulatorConfig
from simulator.validation import Endpoint

TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})

OUTCOME_KINDS = frozenset(
    {
        "ok",
        "400",
        "401",
        "404",
        "412",
        "422",
        "429",
        "429_busy",
        "429_runway",
        "500",
        "lose_answer",
        "drop_connection",
        "wrapped",
    }
)
"""Names accepted by ``POST /_sim/next``; ``ok`` lets one create through unchanged;
``lose_answer`` answers late (after the client's read timeout), ``drop_connection`` closes the
connection without an answer once the task has started, ``wrapped`` answers
``{"task": {...}, "code": 200}``."""


@dataclass(frozen=True)
class Asset:
    """An uploaded image: ``POST /assets`` stores it, creates look its id up."""

    asset_id: str
    uuid: str
    name: str
    content_type: str
    data: bytes
    width: int | None
    height: int | None
    created_at: str
    account: str = "sim@example.com"


@dataclass(frozen=True)
class QueuedOutcome:
    """One entry of the control queue: what the next create call answers."""

    kind: str
    retry_after: float | None = None
    lose_answer_seconds: float = 2.0


@dataclass(frozen=True)
class CallbackAttempt:
    """One POST to a replyUrl: ``http_status`` when an answer came, ``error`` otherwise."""

    task_id: str
    url: str
    task_status: str | None
    attempt: int
    http_status: int | None
    error: str | None
    at: str
    elapsed: float
    extra: bool = False

    @property
    def ok(self) -> bool:
        """True when the receiver answered 2xx."""
        return self.http_status is not None and 200 <= self.http_status < 300

    def to_json(self) -> dict[str, Any]:
        """The attempt as served by ``GET /_sim/callbacks``."""
        data = asdict(self)
        data["ok"] = self.ok
        return data


@dataclass
class TaskRecord:
    """A task and whether useapi.net still tracks it (``DELETE /scheduler`` stops that)."""

    task_id: str
    obj: dict[str, Any]
    tracked: bool = True
    account: str = "sim@example.com"

    @property
    def terminal(self) -> bool:
        """True once the task reached SUCCEEDED, FAILED or CANCELLED."""
        return str(self.obj.get("status")) in TERMINAL_STATUSES


@dataclass
class SimulatorState:
    """The whole mutable state of one simulator app, guarded by one lock."""

    config: SimulatorConfig
    lock: threading.RLock = field(default_factory=threading.RLock)
    stop_event: threading.Event = field(default_factory=threading.Event)
    assets: dict[str, Asset] = field(default_factory=dict)
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    outcomes: deque[QueuedOutcome] = field(default_factory=deque)
    counters: Counter[str] = field(default_factory=Counter)
    callbacks: list[CallbackAttempt] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    create_log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=200))
    request_log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=500))

    # -- config -----------------------------------------------------------------------------

    def get_config(self) -> SimulatorConfig:
        """The current configuration (immutable; replaced, never mutated)."""
        with self.lock:
            return self.config

    def set_config(self, config: SimulatorConfig) -> None:
        """Replace the configuration; tasks already created keep their own plan."""
        with self.lock:
            self.config = config

    # -- counters ---------------------------------------------------------------------------

    def count(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name``."""
        with self.lock:
            self.counters[name] += amount

    def log_create(self, endpoint: str, body: dict[str, Any]) -> None:
        """Remember a decoded create body and its endpoint (the last 200; ``GET /_sim/creates``)."""
        with self.lock:
            self.create_log.append({"endpoint": endpoint, "body": copy.deepcopy(body)})

    def log_request(self, method: str, path: str, email: str | None) -> None:
        """Remember one vendor request: method, route path and its ``email`` (the last 500;
        ``GET /_sim/requests``)."""
        with self.lock:
            self.request_log.append({"method": method, "path": path, "email": email})

    def logged_requests(self) -> list[dict[str, Any]]:
        """Copies of the logged vendor requests, oldest first."""
        with self.lock:
            return [dict(item) for item in self.request_log]

    def logged_creates(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Copies of the logged create bodies, oldest first, optionally for one endpoint."""
        with self.lock:
            return [
                copy.deepcopy(item)
                for item in self.create_log
                if endpoint is None or item["endpoint"] == endpoint
            ]

    # -- assets -----------------------------------------------------------------------------

    def add_asset(self, asset: Asset) -> None:
        """Store an uploaded image."""
        with self.lock:
            self.assets[asset.asset_id] = asset

    def get_asset(self, asset_id: str) -> Asset | None:
        """The asset with this id, or None."""
        with self.lock:
            return self.assets.get(asset_id)

    def find_asset_by_uuid(self, uuid: str) -> Asset | None:
        """The asset whose uuid part is ``uuid``, or None (serves ``/_sim/assets/<uuid>``)."""
        with self.lock:
            for asset in self.assets.values():
                if asset.uuid == uuid:
                    return asset
            return None

    # -- tasks ------------------------------------------------------------------------------

    def add_task(self, obj: dict[str, Any], account: str = "sim@example.com") -> None:
        """Register a new task object (keyed by its ``taskId``) run by ``account``."""
        task_id = str(obj["taskId"])
        with self.lock:
            self.tasks[task_id] = TaskRecord(
                task_id=task_id, obj=copy.deepcopy(obj), account=account
            )

    def task_account(self, task_id: str) -> str | None:
        """The account that runs a task, or None if the task is unknown."""
        with self.lock:
            record = self.tasks.get(task_id)
            return None if record is None else record.account

    def get_task(self, task_id: str) -> dict[str, Any] | None:
        """A copy of the current task object, or None if unknown."""
        with self.lock:
            record = self.tasks.get(task_id)
            return None if record is None else copy.deepcopy(record.obj)

    def is_tracked(self, task_id: str) -> bool:
        """False once ``DELETE /scheduler/<taskId>`` removed the task (or it is unknown)."""
        with self.lock:
            record = self.tasks.get(task_id)
            return record is not None and record.tracked

    def set_task(self, obj: dict[str, Any]) -> None:
        """Replace the current object of a known task (the task's own progress)."""
        task_id = str(obj["taskId"])
        with self.lock:
            record = self.tasks.get(task_id)
            if record is not None:
                record.obj = copy.deepcopy(obj)

    def live_tasks(self, account: str | None = None) -> list[dict[str, Any]]:
        """Copies of the tracked tasks that are not terminal (of ``account`` when given),
        oldest first."""
        with self.lock:
            return [
                copy.deepcopy(record.obj)
                for record in self.tasks.values()
                if record.tracked
                and not record.terminal
                and (account is None or record.account == account)
            ]

    def untrack(self, task_id: str) -> bool:
        """Stop tracking a live task; False if it is unknown, terminal or already untracked."""
        with self.lock:
            record = self.tasks.get(task_id)
            if record is None or not record.tracked or record.terminal:
                return False
            record.tracked = False
            return True

    # -- control queue ----------------------------------------------------------------------

    def push_outcomes(self, outcomes: list[QueuedOutcome], clear: bool = False) -> list[str]:
        """Append outcomes to the queue (after emptying it if ``clear``); returns the queue."""
        with self.lock:
            if clear:
                self.outcomes.clear()
            self.outcomes.extend(outcomes)
            return [item.kind for item in self.outcomes]

    def pop_outcome(self) -> QueuedOutcome | None:
        """The next queued outcome, or None when the queue is empty (normal behaviour)."""
        with self.lock:
            return self.outcomes.popleft() if self.outcomes else None

    def queued_outcomes(self) -> list[str]:
        """The kinds still queued, first one first."""
        with self.lock:
            return [item.kind for item in self.outcomes]

    # -- callbacks --------------------------------------------------------------------------

    def record_attempt(self, attempt: CallbackAttempt) -> None:
        """Remember one callback attempt and count it as sent (2xx) or failed."""
        with self.lock:
            self.callbacks.append(attempt)
            self.counters["callbacks_sent" if attempt.ok else "callbacks_failed"] += 1

    def callback_attempts(self, task_id: str | None = None) -> list[CallbackAttempt]:
        """Attempts so far, optionally for one task only."""
        with self.lock:
            return [a for a in self.callbacks if task_id is None or a.task_id == task_id]

    # -- stats and lifecycle ----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The counters served by ``GET /_sim/stats``."""
        with self.lock:
            names = (
                "status_requests",
                "scheduler_requests",
                "creates",
                "tasks_created",
                "uploads",
                "callbacks_sent",
                "callbacks_failed",
            )
            result: dict[str, Any] = {name: self.counters[name] for name in names}
            result["creates_by_endpoint"] = {
                endpoint: self.counters[f"creates_{endpoint}"] for endpoint in get_args(Endpoint)
            }
            result["tasks"] = {
                task_id: record.obj.get("status") for task_id, record in self.tasks.items()
            }
            result["queued_outcomes"] = [item.kind for item in self.outcomes]
            return result

    def reset(self) -> None:
        """Forget tasks, assets, counters, callbacks and the queue (config is kept).

        Callback threads still running stop posting: their tasks are no longer known.
        """
        with self.lock:
            self.tasks.clear()
            self.assets.clear()
            self.outcomes.clear()
            self.counters.clear()
            self.callbacks.clear()
            self.create_log.clear()
            self.request_log.clear()

    def start_thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        """Start a daemon thread and remember it so :meth:`shutdown` can wait for it."""
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self.lock:
            self.threads = [t for t in self.threads if t.is_alive()]
            self.threads.append(thread)
        thread.start()
        return thread

    def shutdown(self, timeout: float = 5.0) -> None:
        """Ask callback threads to stop and wait up to ``timeout`` seconds for them in total."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        with self.lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
