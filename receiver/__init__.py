"""runway-relay's receiver: the web app, the delivery worker and the ``relay`` command.

gunicorn runs ``receiver:create_app()``. The app module is imported on first use, so that the
``relay`` command does not pay for Flask's blueprints when it does not serve HTTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from receiver.runtime import Runtime
    from receiver.settings import Settings


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    """Build the Flask app; see :func:`receiver.app.create_app`."""
    from receiver.app import create_app as _create_app

    return _create_app(settings, runtime=runtime)


__all__ = ["create_app"]
