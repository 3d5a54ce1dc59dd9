"""Load an image for ``POST /assets``: from bytes, a file, an https URL or a ``data:`` URI.

useapi.net's asset upload takes the raw image bytes with ``Content-Type`` image/png, image/jpeg
or image/gif (useapi.net docs: POST /v1/runwayml/assets, as summarised in SPEC.md section 1).
The content type is decided here from the file's magic bytes, never from its name or a server's
header, so a mislabelled file is either sent with its true type or refused.

Every failure raises :class:`ImageError` (a ``ValueError``), chained with ``from`` when another
exception caused it.
"""

from __future__ import annotations

import base64
import binascii
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "ImageError",
    "LoadedImage",
    "detect_image_type",
    "load_image",
]

#: Default size cap of one image, bytes (20 MiB).
DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024

_CHUNK_BYTES = 64 * 1024

_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "image/gif": (".gif",),
}

_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._\-]+")
_MAX_NAME_LENGTH = 100


class ImageError(ValueError):
    """The image cannot be used: unreadable path, download failure, bad ``data:`` URI, over the
    size cap, empty, or not a PNG, JPEG or GIF."""


@dataclass(frozen=True)
class LoadedImage:
    """An image ready for upload.

    Attributes:
        data: the raw bytes.
        content_type: ``"image/png"``, ``"image/jpeg"`` or ``"image/gif"``, from the magic bytes.
        name: a file name for the vendor's ``?name=``: ASCII letters, digits, ``._-``, at most
            100 characters, with an extension matching ``content_type``.
    """

    data: bytes
    content_type: str
    name: str


def detect_image_type(data: bytes) -> str | None:
    """The MIME type told by ``data``'s first bytes: PNG (``89 50 4E 47 0D 0A 1A 0A``), JPEG
    (``FF D8 FF``) or GIF (``GIF87a``/``GIF89a``); ``None`` for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return None


def load_image(
    source: str | bytes | os.PathLike[str],
    *,
    session: requests.Session | None = None,
    timeout: tuple[float, float] = (5, 30),
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    allow_http: bool = False,
) -> LoadedImage:
    """Read an image from any of the supported sources and check it.

    Args:
        source: raw ``bytes``; a ``data:image/…;base64,…`` URI; an ``https://`` URL (``http://``
            only with ``allow_http``); or a file path (str or ``os.PathLike``).
        session: the ``requests`` session for downloads; a short-lived one is made if None.
            No credentials are added: the URL is fetched as an anonymous client.
        timeout: ``(connect, read)`` timeout of the download, seconds.
        max_bytes: largest image accepted, bytes.
        allow_http: accept plain ``http://`` URLs (development and tests only).

    Returns:
        The image's bytes, its content type from the magic bytes, and a file name.

    Raises:
        ImageError: the source is unreadable or unsupported, the download fails (status not
            2xx, timeout, connection error), the image exceeds ``max_bytes``, is empty, or is
            not a PNG, JPEG or GIF.

    Security: a URL is fetched as given (redirects followed, the final URL must keep an
    allowed scheme). Callers that take URLs from untrusted users must vet the host themselves.
    """
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    if isinstance(source, bytes):
        data, name = source, "image"
    elif isinstance(source, str) and source[:5].lower() == "data:":
        data, name = _from_data_uri(source, max_bytes), "image"
    elif isinstance(source, str) and "://" in source[:16]:
        data, name = _download(source, session, timeout, max_bytes, allow_http)
    elif isinstance(source, str | os.PathLike):
        data, name = _read_file(Path(source), max_bytes)
    else:
        raise ImageError(f"unsupported image source type {type(source).__name__}")
    return _checked(data, name, max_bytes)


def _checked(data: bytes, name: str, max_bytes: int) -> LoadedImage:
    if not data:
        raise ImageError("the image is empty")
    if len(data) > max_bytes:
        raise ImageError(f"the image is {len(data)} bytes, over the limit of {max_bytes} bytes")
    content_type = detect_image_type(data)
    if content_type is None:
        raise ImageError(
            "not a PNG, JPEG or GIF image (checked from the file's first bytes, not its name)"
        )
    return LoadedImage(data=data, content_type=content_type, name=_file_name(name, content_type))


def _file_name(raw: str, content_type: str) -> str:
    """A safe ASCII file name whose extension matches ``content_type``."""
    base = posixpath.basename(raw.replace("\\", "/"))
    stem, ext = os.path.splitext(base)
    stem = _UNSAFE_NAME_CHARS.sub("_", stem).strip("._") or "image"
    allowed = _EXTENSIONS[content_type]
    ext = ext.lower() if ext.lower() in allowed else allowed[0]
    return stem[: _MAX_NAME_LENGTH - len(ext)] + ext


def _from_data_uri(uri: str, max_bytes: int) -> bytes:
    header, comma, encoded = uri.partition(",")
    if not comma:
        raise ImageError("bad data URI: no ',' between header and data")
    params = [part.strip().lower() for part in header[5:].split(";")]
    if "base64" not in params[1:]:
        raise ImageError("bad data URI: only base64-encoded data URIs are supported")
    if params[0] and not params[0].startswith("image/"):
        raise ImageError(f"bad data URI: media type {params[0]!r} is not an image")
    compact = "".join(encoded.split())
    if len(compact) // 4 * 3 > max_bytes + 3:
        raise ImageError(f"the data URI holds more than {max_bytes} bytes")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError("bad data URI: the data is not valid base64") from e


def _read_file(path: Path, max_bytes: int) -> tuple[bytes, str]:
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise ImageError(f"{path.name} is {size} bytes, over the limit of {max_bytes}")
            data = handle.read(max_bytes + 1)
    except OSError as e:
        raise ImageError(f"cannot read image file {str(path)!r}: {e.strerror or e}") from e
    return data, path.name


def _check_scheme(url: str, allow_http: bool) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "https" or (scheme == "http" and allow_http):
        return
    if scheme == "http":
        raise ImageError("plain http:// image URLs are refused; use https:// (or allow_http)")
    raise ImageError(f"unsupported image URL scheme {scheme!r}")


def _download(
    url: str,
    session: requests.Session | None,
    timeout: tuple[float, float],
    max_bytes: int,
    allow_http: bool,
) -> tuple[bytes, str]:
    _check_scheme(url, allow_http)
    own = session is None
    http = requests.Session() if session is None else session
    try:
        with http.get(url, stream=True, timeout=timeout) as response:
            _check_scheme(response.url, allow_http)
            if not 200 <= response.status_code < 300:
                raise ImageError(f"image download failed: HTTP {response.status_code}")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ImageError(
                    f"the image at the URL is {declared} bytes, over the limit of {max_bytes}"
                )
            chunks: list[bytes] = []
            received = 0
            for chunk in response.iter_content(_CHUNK_BYTES):
                received += len(chunk)
                if received > max_bytes:
                    raise ImageError(f"the image at the URL is over the limit of {max_bytes} bytes")
                chunks.append(chunk)
            final_url = response.url
    except requests.exceptions.RequestException as e:
        raise ImageError(f"image download failed: {type(e).__name__}") from e
    finally:
        if own:
            http.close()
    path = unquote(urlsplit(final_url).path)
    return b"".join(chunks), posixpath.basename(path) or "image"
