"""Group commit under gevent on SQLite, beside another process that writes the same file.

In the web's gunicorn worker a SQLite batch of the group commit runs on a native thread of
gevent's pool, while admin requests write in transactions of their own on the hub; a worker
process holds the file's writer lock now and then. The writer queue's thread lock is one of
gevent's: when the native thread took and gave it back itself, greenlets waiting on the hub
missed the release and waited out the busy timeout (30 s) — found as a `POST /api/tasks`
that timed out in tests/e2e/test_models.py. Real processes, a real SQLite file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine

from tests.helpers import sql_rows
from tests.integration.sqlite_writers import STALL_SECONDS

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 25


def test_hub_writers_never_wait_out_the_busy_timeout_beside_the_group_commit(
    sqlite_url: str,
) -> None:
    helper = [sys.executable, "-m", "tests.integration.sqlite_writers"]
    rival = subprocess.Popen([*helper, "rival", sqlite_url, "120"], cwd=ROOT)
    try:
        ran = subprocess.run(
            [*helper, "gevent", sqlite_url, str(ROUNDS)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        rival.kill()
        rival.wait()
    assert ran.returncode == 0, ran.stderr
    done = json.loads(ran.stdout)
    assert done["rounds"] == ROUNDS, done  # it stops early after a stall
    assert done["slowest"] < STALL_SECONDS, done
    engine = create_engine(sqlite_url)
    stored = dict(
        sql_rows(engine, "SELECT reason, count(*) FROM refused_callbacks GROUP BY reason")
    )
    engine.dispose()
    assert stored["group"] == done["group"] == ROUNDS * 40
    assert stored["alone"] == done["alone"] == ROUNDS * 6
    assert stored["rival"] > 0  # the other process did write meanwhile
