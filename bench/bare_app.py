"""The reference endpoint of the ingest benchmark: the least a Flask app under gunicorn can do.

``POST /callbacks/useapi`` reads the body and answers 204; ``GET /healthz`` answers 200. It runs
under the same command and settings as the Procfile's ``web:`` line (``gunicorn
'bench.bare_app:create_app()'`` with the same ``gunicorn.conf.py``, ``WEB_CONCURRENCY`` and
``WEB_THREADS``), so the ratio relay / bare measures what runway-relay's own code costs.
"""

from __future__ import annotations

from flask import Flask, Response, request


def create_app() -> Flask:
    """A fresh bare app (gunicorn calls ``create_app()`` in each worker)."""
    app = Flask(__name__)

    @app.post("/callbacks/useapi")
    def callback() -> Response:
        request.get_data(cache=False)  # read the body, as the relay does
        return Response(status=204)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", status=200, mimetype="text/plain")

    return app
