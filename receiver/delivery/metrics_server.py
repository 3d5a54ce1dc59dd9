"""``relay worker``'s own ``GET /metrics`` (``WORKER_METRICS_PORT``): this process's counters."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request as WsgiRequest
from werkzeug.wrappers import Response as WsgiResponse

from receiver.metrics import render
from receiver.web.auth import bearer_matches

_UNAUTHORIZED = json.dumps(
    {
        "error": {
            "code": "unauthorized",
            "message": "a valid 'Authorization: Bearer <ADMIN_TOKEN>' is required",
        }
    }
).encode()


class WorkerMetricsServer:
    """``GET /metrics`` of ``relay worker`` on its own port (``WORKER_METRICS_PORT``).

    For hosts that can reach the worker (a VM, a container with a published port): this
    process's own counters since it started, bound to ``WORKER_METRICS_HOST``. Same bearer
    ``ADMIN_TOKEN``. The web's ``/metrics`` shows every worker's counters (from the database)
    and the gauges; this endpoint is optional.
    """

    def __init__(self, host: str, port: int, admin_token: str) -> None:
        self.admin_token = admin_token
        self._server: BaseWSGIServer = make_server(host, port, self._wsgi, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="worker-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def start(self) -> WorkerMetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _wsgi(self, environ: dict[str, object], start_response: object) -> Iterable[bytes]:
        req = WsgiRequest(environ)
        if req.path != "/metrics":
            resp = WsgiResponse(b"not found", status=404)
        elif not bearer_matches(req.headers.get("Authorization"), self.admin_token):
            resp = WsgiResponse(_UNAUTHORIZED, status=401, content_type="application/json")
        else:
            resp = WsgiResponse(render(None), status=200, content_type=CONTENT_TYPE_LATEST)
        return resp(environ, start_response)  # type: ignore[arg-type]
