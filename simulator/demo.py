"""``make demo``: the main job end to end on the embedded default, then everything stops.

Starts the vendor simulator, a sample subscriber that verifies every webhook, the web process
(the Procfile's ``web:`` line under gunicorn) and the worker (its ``worker:`` line) on free
loopback ports, with a SQLite file and their logs in ``.demo/``; submits one task with ``relay
submit`` and the default model (Gen-4.5 on ``POST /videos/create``); says which model and
endpoint it used; waits for its ``task.succeeded`` to arrive verified; prints what happened;
stops what it started and exits 0 (1 if anything went wrong).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import requests

from simulator.processes import Process, bin_path, free_port, procfile_argv, simulator_argv

ROOT = Path(__file__).resolve().parent.parent


def tiny_png(width: int = 64, height: int = 40) -> bytes:
    """A small valid RGB PNG (a gradient), so the demo needs no image on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 4 % 256, y * 6 % 256, 160))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _step(message: str) -> None:
    print(f"==> {message}", flush=True)


def _keep_open(dashboard: str, admin_token: str, job_id: str) -> None:
    """Leave everything running a while so the dashboard can be looked at, then return.

    ``DEMO_KEEP_OPEN`` seconds; by default 120 in a terminal and 0 otherwise (CI, scripts).
    Ctrl-C ends the wait early.
    """
    default = "120" if sys.stdin.isatty() else "0"
    try:
        seconds = float(os.environ.get("DEMO_KEEP_OPEN", default))
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        return
    _step(f"open {dashboard} and sign in with ADMIN_TOKEN {admin_token}")
    print(f"    the demo task is {dashboard}/tasks/{job_id}", flush=True)
    print(f"    everything stays up for {seconds:.0f} s; press Ctrl-C to stop now", flush=True)
    try:
        time.sleep(seconds)
    except KeyboardInterrupt:
        print("", flush=True)


def _run(argv: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}{result.stdout}"
        )
    return result.stdout


def main() -> int:
    """Run the demo; returns the exit status."""
    workdir = ROOT / ".demo"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    web_port, sim_port, sub_port = free_port(), free_port(), free_port()
    admin_token = secrets.token_urlsafe(16)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "RELAY_"))},
        "RELAY_ENV": "development",
        "SECRET_KEY": secrets.token_hex(32),
        "DATABASE_URL": f"sqlite:///{workdir / 'relay.sqlite3'}",
        "ADMIN_TOKEN": admin_token,
        "USEAPI_TOKEN": "sim-token",
        "USEAPI_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}",
        "PORT": str(web_port),
        "ALLOW_PRIVATE_URLS": "1",
        "LOG_FORMAT": "text",
        "WEB_CONCURRENCY": "2",
        "PYTHONUNBUFFERED": "1",
        # web and worker count into one directory, so /metrics shows the deliveries too
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
    }
    relay = bin_path("relay")
    started: list[Process] = []
    ok = False
    try:
        _step("relay db upgrade (the Procfile's release line)")
        _run([relay, "db", "upgrade"], env)

        _step("relay subscribers add (a sample subscriber that verifies every signature)")
        added = json.loads(
            _run(
                [
                    relay,
                    "subscribers",
                    "add",
                    f"http://127.0.0.1:{sub_port}/hook",
                    "--events",
                    "task.progress,task.succeeded,task.failed",
                    "--description",
                    "demo subscriber",
                ],
                env,
            )
        )
        print(f"    subscriber {added['id']} with secret {added['secret'][:12]}…", flush=True)

        _step("starting the vendor simulator, the subscriber, web (gunicorn) and worker")

        def child(name: str, argv: list[str], *, echo: bool = False) -> Process:
            """Start ``argv`` with its output in ``.demo/<name>.log`` (stopped at the end)."""
            proc = Process(
                name, argv, env=env, cwd=ROOT, echo=echo, log_path=workdir / f"{name}.log"
            )
            started.append(proc)
            return proc

        sim = child("simulator", simulator_argv(sim_port))
        sub_argv = [sys.executable, "-m", "simulator.subscriber", "--port", str(sub_port)]
        sub = child("subscriber", [*sub_argv, "--secret", added["secret"]], echo=True)
        web = child("web", procfile_argv("web", ROOT / "Procfile"))
        worker = child("worker", procfile_argv("worker", ROOT / "Procfile"))
        sim.wait_for_line("listening on", 20)
        sub.wait_for_line("listening on", 20)
        web.wait_http(f"http://127.0.0.1:{web_port}/readyz", 30)
        worker.wait_for_line("relay worker", 30)
        dashboard = f"http://127.0.0.1:{web_port}/dashboard"
        _step(f"dashboard: {dashboard}  (sign in with ADMIN_TOKEN {admin_token})")

        image = workdir / "first-frame.png"
        image.write_bytes(tiny_png())
        _step("relay submit --image first-frame.png --prompt … (no --model: the default)")
        submitted = json.loads(
            _run(
                [
                    relay,
                    "submit",
                    "--image",
                    str(image),
                    "--prompt",
                    "a paper boat drifting down a rainy street, slow dolly",
                    "--seconds",
                    "5",
                    "--metadata",
                    json.dumps({"demo": True}),
                ],
                env,
            )
        )
        print("    " + json.dumps(submitted), flush=True)
        print(
            f"    model {submitted['model']} created on POST {submitted['endpoint']} "
            f"(task {submitted['task_id']})",
            flush=True,
        )

        _step("waiting for task.succeeded at the subscriber (pushed, not polled)")
        line = sub.wait_for_line("verified task.succeeded", 60)
        stats = requests.get(f"http://127.0.0.1:{sim_port}/_sim/stats", timeout=5).json()
        job = requests.get(
            f"http://127.0.0.1:{web_port}/api/tasks/{submitted['job_id']}",
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=5,
        ).json()
        _step("done")
        print(f"    {line}", flush=True)
        print(
            f"    job {job['job_id']}: {job['status']}, {len(job['events'])} events, "
            f"{len(job['callbacks'])} callbacks received",
            flush=True,
        )
        print(
            f"    {job['model']} task created on POST {submitted['endpoint']}; creates by "
            f"endpoint at the vendor: {stats['creates_by_endpoint']}",
            flush=True,
        )
        print(
            f"    vendor status requests made by runway-relay: {stats['status_requests']}",
            flush=True,
        )
        ok = (
            stats["status_requests"] == 0
            and job["status"] == "SUCCEEDED"
            and job["model"] == "gen4.5"
            and stats["creates_by_endpoint"]["videos"] == 1
        )
        if not ok:
            print("demo FAILED: unexpected final state", flush=True)
        else:
            _keep_open(dashboard, admin_token, job["job_id"])
    except Exception as exc:  # report and fall through to cleanup
        print(f"demo FAILED: {exc}", flush=True)
        for proc in started:
            print(f"--- {proc.name} output ---\n{proc.output()}", flush=True)
    finally:
        for proc in reversed(started):
            proc.stop()
        time.sleep(0.1)
    print(f"all demo processes stopped (their output: {workdir}/*.log)", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
