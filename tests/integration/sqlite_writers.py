"""Writer processes for tests/integration/test_group_commit_gevent.py (run with ``python -m``).

``gevent URL ROUNDS``: a process patched by gevent as the web's gunicorn worker is; each round,
40 greenlets store a refused callback through the group commit (SQLite batches run on a native
thread of gevent's pool) while 6 others write one each in a transaction of their own on the hub
(as the admin API does). Prints one JSON line: ``{"rounds", "group", "alone", "slowest"}`` —
rounds run, pieces stored each way, the slowest hub transaction in seconds. Stops early, after
the round in which a hub transaction took longer than ``STALL_SECONDS``.

``rival URL SECONDS``: a plain process that holds the file's writer lock about 2 ms every 5 ms
for ``SECONDS`` (a worker applying callbacks), so that the other process's writers queue for it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported for real after gevent's patching, as in the web
    from receiver.store.repositories import Repository

STALL_SECONDS = 10.0


def refusal(reason: str) -> Callable[[Repository], None]:
    """A piece of work that stores one refused callback with ``reason`` (no trimming)."""
    from receiver.clock import utcnow

    def write(repo: Repository) -> None:
        repo.add_refused(
            received_at=utcnow(),
            reason=reason,
            detail=None,
            http_status=400,
            source_ip=None,
            body_sha256=None,
            body_size=0,
            job_id=None,
            keep=1_000_000,
        )

    return write


def run_gevent(url: str, rounds: int) -> None:
    from gevent import monkey

    monkey.patch_all()
    import json

    import gevent

    from receiver.store.batch import group_commit
    from receiver.store.engine import make_engine
    from receiver.store.uow import UnitOfWork

    engine = make_engine(url)
    batch = group_commit(engine)
    grouped = refusal("group")
    alone = refusal("alone")

    def through_the_group() -> None:
        batch.run(grouped)

    def on_the_hub() -> float:
        started = time.monotonic()
        with UnitOfWork(engine) as uow:
            alone(uow.repo)
            uow.commit()
        return time.monotonic() - started

    done = {"rounds": 0, "group": 0, "alone": 0, "slowest": 0.0}
    for _ in range(rounds):
        group = [gevent.spawn(through_the_group) for _ in range(20)]
        hub = [gevent.spawn(on_the_hub) for _ in range(3)]
        gevent.sleep(0.01)
        group += [gevent.spawn(through_the_group) for _ in range(20)]
        hub += [gevent.spawn(on_the_hub) for _ in range(3)]
        gevent.joinall(group + hub, raise_error=True)
        done["rounds"] += 1
        done["group"] += len(group)
        done["alone"] += len(hub)
        done["slowest"] = max(done["slowest"], *(g.value for g in hub))
        if done["slowest"] > STALL_SECONDS:
            break
        gevent.sleep(0.2)
    print(json.dumps(done), flush=True)


def run_rival(url: str, seconds: float) -> None:
    from receiver.store.engine import make_engine
    from receiver.store.uow import UnitOfWork

    engine = make_engine(url)
    write = refusal("rival")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with UnitOfWork(engine) as uow:
            write(uow.repo)
            time.sleep(0.002)
            uow.commit()
        time.sleep(0.003)


if __name__ == "__main__":
    kind, url, amount = sys.argv[1:4]
    if kind == "gevent":
        run_gevent(url, int(amount))
    else:
        run_rival(url, float(amount))
