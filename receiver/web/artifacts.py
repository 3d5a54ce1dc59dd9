"""``GET /artifacts/<token>``: the durable copy of a video (``ARTIFACT_STORE``).

The token is the stored file's key signed with ``SECRET_KEY`` (:class:`receiver.artifacts.
ArtifactSigner`): it is the credential, so the route needs no admin token, and a token that
does not verify, or names a file that is gone (retention), answers 404 without saying which.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_file

from receiver.artifacts import ArtifactSigner, LocalStore
from receiver.web.context import runtime
from receiver.web.errors import ApiError

bp = Blueprint("artifacts", __name__)


@bp.get("/artifacts/<token>")
def artifact(token: str) -> Response:
    """The stored video (``video/mp4``; ranges and conditional requests honoured).

    :raise 404: ``ARTIFACT_STORE`` is off, the token does not verify, or the file is gone.
    """
    settings = runtime().settings
    key = ArtifactSigner(settings.signing_keys).key(token) if settings.artifact_store else None
    path = LocalStore(Path(settings.artifact_store)).path(key) if key else None
    if path is None:
        raise ApiError(404, "artifact_not_found", "no such artifact")
    return send_file(path, mimetype="video/mp4", conditional=True, max_age=3600)
