"""A webhook sink for the benchmarks: answers ``204`` at once and notes when each event came.

It is a small asyncio HTTP/1.1 server (keep-alive, ``Content-Length`` bodies) in its own
process, so that it costs the measured processes as little as possible:

- ``POST /hook``: records ``(webhook-id, arrival time)`` and answers 204 No Content;
- ``GET /_stats``: ``{"count", "first", "last"}`` (Unix seconds) of the hooks received;
- ``GET /_records``: ``[[webhook_id, arrival], …]``;
- ``POST /_reset``: forgets everything received.

It verifies nothing (the end-to-end tests do): the fan-out benchmark needs a subscriber that is
never the bottleneck, and ``bench`` checks that with wrk against this very process.
Run: ``python -m bench.subscriber --port N`` (prints ``listening on …`` when ready).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from typing import Any

NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


class Sink:
    """What the sink has received so far."""

    def __init__(self) -> None:
        self.records: list[tuple[str, float]] = []

    def stats(self) -> dict[str, Any]:
        if not self.records:
            return {"count": 0, "first": None, "last": None}
        return {
            "count": len(self.records),
            "first": self.records[0][1],
            "last": self.records[-1][1],
        }


def _json_response(value: Any) -> bytes:
    body = json.dumps(value).encode()
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class HookProtocol(asyncio.Protocol):
    """One connection: parses pipelined HTTP/1.1 requests with ``Content-Length`` bodies."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) < 2:
                self.transport.close()
                return
            headers: dict[str, str] = {}
            for line in lines[1:]:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self.transport.close()
                return
            if len(self.buf) < end + 4 + length:
                return
            del self.buf[: end + 4 + length]
            self.transport.write(self._answer(parts[0], parts[1], headers))
            if headers.get("connection", "").lower() == "close":
                self.transport.close()
                return

    def _answer(self, method: str, target: str, headers: dict[str, str]) -> bytes:
        if method == "POST" and target.startswith("/hook"):
            self.sink.records.append((headers.get("webhook-id", ""), time.time()))
            return NO_CONTENT
        if target == "/_stats":
            return _json_response(self.sink.stats())
        if target == "/_records":
            return _json_response(self.sink.records)
        if method == "POST" and target == "/_reset":
            self.sink.records = []
            return _json_response({"reset": True})
        if target == "/healthz":
            return _json_response({"ok": True})
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int) -> None:
    """Serve on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    sink = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HookProtocol(sink), "127.0.0.1", port, backlog=1024, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on http://127.0.0.1:{port}/hook", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A 204-at-once webhook sink for benchmarks.")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
