"""The simulator's app factory: a Flask app that behaves like the useapi.net Runway API.

Used by tests, benchmarks and the demo in place of ``https://api.useapi.net/v1/runwayml``. Vendor
routes are in :mod:`simulator.vendor`, test controls under ``/_sim`` in :mod:`simulator.control`.
"""

from __future__ import annotations

from flask import Flask
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from simulator import control, vendor
from simulator.config import SimulatorConfig
from simulator.state import SimulatorState
from simulator.validation import RequestError

MAX_UPLOAD_BYTES = 32 * 1024 * 1024


def create_app(config: SimulatorConfig | None = None) -> Flask:
    """Build a fresh simulator app with its own :class:`SimulatorState`.

    The state is at ``app.extensions["simulator"]`` (see :func:`get_state`); call its
    ``shutdown()`` to stop callback threads when done.
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["simulator"] = SimulatorState(config=config or SimulatorConfig())
    app.register_blueprint(vendor.bp)
    app.register_blueprint(control.bp)

    @app.errorhandler(RequestError)
    def request_error(error: RequestError) -> ResponseReturnValue:
        return vendor.error_response(error.status, {"error": error.message, "code": error.status})

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> ResponseReturnValue:
        status = error.code or 500
        message = error.description or error.name
        response = vendor.error_response(status, {"error": message, "code": status})
        for key, value in error.get_headers():
            if key.lower() == "allow":
                response.headers[key] = value
        return response

    return app


def get_state(app: Flask) -> SimulatorState:
    """The :class:`SimulatorState` of an app made by :func:`create_app`."""
    state = app.extensions["simulator"]
    assert isinstance(state, SimulatorState)
    return state
