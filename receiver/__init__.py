"""runway-relay's receiver: the web app, the delivery worker and the ``relay`` command.

gunicorn runs ``receiver:create_app()``.
"""

from receiver.app import create_app

__all__ = ["create_app"]
