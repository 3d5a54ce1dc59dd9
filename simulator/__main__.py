"""``python -m simulator``: serve the simulator with werkzeug's threaded server.

Prints ``simulator listening on http://HOST:PORT`` once the socket is bound (``--port 0``
picks a free port and prints it) and stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from pydantic import ValidationError
from werkzeug.serving import make_server

from simulator.app import create_app, get_state
from simulator.config import SimulatorConfig


def build_parser() -> argparse.ArgumentParser:
    """The command-line options; each maps to a :class:`SimulatorConfig` field."""
    defaults = SimulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="A local stand-in for the useapi.net Runway API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--token", default=defaults.token, help="the accepted bearer token")
    parser.add_argument("--progress-steps", type=int, default=defaults.progress_steps)
    parser.add_argument("--step-delay", type=float, default=defaults.step_delay, help="seconds")
    parser.add_argument("--start-delay", type=float, default=defaults.start_delay, help="seconds")
    parser.add_argument(
        "--outcome", choices=("succeeded", "failed", "moderated"), default=defaults.outcome
    )
    parser.add_argument("--duplicate-terminal", action="store_true")
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument(
        "--callback-timeout", type=float, default=defaults.callback_timeout, help="seconds"
    )
    parser.add_argument("--callback-retries", type=int, default=defaults.callback_retries)
    parser.add_argument("--public-url", default=None, help="base of artifact URLs")
    parser.add_argument("--max-jobs", type=int, default=None, help="answer 429 beyond N live tasks")
    parser.add_argument(
        "--account",
        dest="accounts",
        action="append",
        help="a configured account email (repeatable; two or more make email required)",
    )
    parser.add_argument(
        "--wrap-answers", action="store_true", help='answer creates as {"task": {...}, "code": 200}'
    )
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    return parser


def display_host(host: str) -> str:
    """``host`` as it goes in a URL (IPv6 addresses in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGTERM or SIGINT; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    defaults = SimulatorConfig()
    try:
        config = SimulatorConfig(
            token=args.token,
            progress_steps=args.progress_steps,
            step_delay=args.step_delay,
            start_delay=args.start_delay,
            outcome=args.outcome,
            duplicate_terminal=args.duplicate_terminal,
            shuffle=args.shuffle,
            callback_timeout=args.callback_timeout,
            callback_retries=args.callback_retries,
            public_url=args.public_url,
            max_jobs=args.max_jobs,
            accounts=args.accounts or defaults.accounts,
            wrap_answers=args.wrap_answers,
        )
    except ValidationError as exc:
        parser.error(str(exc))

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        logging.getLogger("simulator").setLevel(logging.WARNING)

    app = create_app(config)
    server = make_server(args.host, args.port, app, threaded=True)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    serving = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="sim-server", daemon=True
    )
    serving.start()
    print(
        f"simulator listening on http://{display_host(args.host)}:{server.server_port}", flush=True
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        get_state(app).shutdown(timeout=2.0)
        serving.join(2.0)
    print("simulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
