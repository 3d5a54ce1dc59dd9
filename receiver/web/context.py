"""Access to the app's :class:`~receiver.runtime.Runtime` from a request."""

from __future__ import annotations

from flask import current_app

from receiver.runtime import Runtime


def runtime() -> Runtime:
    """The runtime that ``create_app`` stored on the current app."""
    rt: Runtime = current_app.extensions["relay"]
    return rt
