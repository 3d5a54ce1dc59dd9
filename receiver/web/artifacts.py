"""``GET /artifacts/<token>``: the durable copy of a video (``ARTIFACT_STORE``).

The token is the stored file's key signed with ``SECRET_KEY`` (:class:`receiver.artifacts.
ArtifactSigner`): it is the credential, so the route needs no admin token, and a token that
does not verify, or names a file that is gone (retention), answers 404 without saying which.
"""

from __future__ import annotations

from flask import Blueprint, redirect, send_file
from werkzeug.wrappers import Response

from receiver.artifacts import PRESIGNED_SECONDS, ArtifactSigner, S3Store, open_store
from receiver.web.context import runtime
from receiver.web.errors import ApiError

bp = Blueprint("artifacts", __name__)


@bp.get("/artifacts/<token>")
def artifact(token: str) -> Response:
    """The stored video: from a directory, the file itself (``video/mp4``; ranges and
    conditional requests honoured); from S3, a 302 to a presigned URL that lasts
    :data:`receiver.artifacts.PRESIGNED_SECONDS`.

    :raise 404: ``ARTIFACT_STORE`` is off, the token does not verify, or the file is gone.
    """
    settings = runtime().settings
    key = ArtifactSigner(settings.signing_keys).key(token) if settings.artifact_store else None
    if key is not None:
        store = open_store(settings.artifact_store, endpoint_url=settings.artifact_s3_endpoint_url)
        if isinstance(store, S3Store):
            return redirect(store.presigned_url(key, PRESIGNED_SECONDS), 302)
        path = store.path(key)
        if path is not None:
            return send_file(path, mimetype="video/mp4", conditional=True, max_age=3600)
    raise ApiError(404, "artifact_not_found", "no such artifact")
