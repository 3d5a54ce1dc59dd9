"""load_image: bytes, paths, data URIs and downloads over loopback HTTP."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from client import ImageError, LoadedImage, detect_image_type, load_image
from tests.helpers import serving

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x01" * 40
JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + b"\x02" * 40
GIF87 = b"GIF87a" + b"\x03" * 40
GIF89 = b"GIF89a" + b"\x03" * 40


@pytest.mark.parametrize(
    ("data", "content_type", "name"),
    [
        (PNG, "image/png", "image.png"),
        (JPEG, "image/jpeg", "image.jpg"),
        (GIF87, "image/gif", "image.gif"),
        (GIF89, "image/gif", "image.gif"),
    ],
)
def test_magic_bytes_decide_the_type(data: bytes, content_type: str, name: str) -> None:
    image = load_image(data)
    assert image == LoadedImage(data=data, content_type=content_type, name=name)
    assert detect_image_type(data) == content_type


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"\x89PNX", b"GIF88a....", b"<svg/>"],
)
def test_non_images_are_refused(data: bytes) -> None:
    with pytest.raises(ImageError):
        load_image(data)


def test_data_uri() -> None:
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    image = load_image(uri)
    assert image.data == PNG
    assert image.content_type == "image/png"


def test_data_uri_type_comes_from_bytes_not_the_label() -> None:
    uri = "data:image/jpeg;base64," + base64.b64encode(GIF89).decode()
    assert load_image(uri).content_type == "image/gif"


def test_data_uri_with_line_breaks() -> None:
    encoded = base64.encodebytes(PNG).decode()  # wraps lines
    assert "\n" in encoded
    assert load_image("data:image/png;base64," + encoded).data == PNG


@pytest.mark.parametrize(
    "uri",
    [
        "data:image/png;base64",
        "data:image/png," + base64.b64encode(PNG).decode(),
        "data:image/png;base64,!!!not base64!!!",
        "data:text/plain;base64," + base64.b64encode(PNG).decode(),
        "data:image/png;base64," + base64.b64encode(b"not an image").decode(),
    ],
    ids=["no-comma", "not-base64-flag", "bad-base64", "not-image-type", "not-image-bytes"],
)
def test_bad_data_uris(uri: str) -> None:
    with pytest.raises(ImageError):
        load_image(uri)


def test_path_as_str_and_pathlike(tmp_path: Path) -> None:
    path = tmp_path / "frame-01.png"
    path.write_bytes(PNG)
    for source in (path, str(path)):
        image = load_image(source)
        assert image.data == PNG
        assert image.content_type == "image/png"
        assert image.name == "frame-01.png"


@pytest.mark.parametrize(
    ("filename", "data", "content_type", "name"),
    [
        # a mislabelled file keeps its true type
        ("photo.jpg", PNG, "image/png", "photo.png"),
        # a JPEG extension variant is kept (lower-cased), the stem made safe
        ("Photo Ünïcode.JPEG", JPEG, "image/jpeg", "Photo_n_code.jpeg"),
    ],
    ids=["mislabelled_file_keeps_its_true_type", "jpeg_extension_variants_are_kept"],
)
def test_file_type_comes_from_its_bytes(
    tmp_path: Path, filename: str, data: bytes, content_type: str, name: str
) -> None:
    path = tmp_path / filename
    path.write_bytes(data)
    image = load_image(path)
    assert image.content_type == content_type
    assert image.name == name


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as caught:
        load_image(tmp_path / "missing.png")
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(ImageError):
        load_image(tmp_path)  # a directory


def test_too_large(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="over the limit"):
        load_image(PNG, max_bytes=len(PNG) - 1)
    assert load_image(PNG, max_bytes=len(PNG)).data == PNG
    path = tmp_path / "big.png"
    path.write_bytes(PNG)
    with pytest.raises(ImageError, match="over the limit"):
        load_image(path, max_bytes=10)
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    with pytest.raises(ImageError):
        load_image(uri, max_bytes=10)


# ---------------------------------------------------------------------------------------------
# Downloads over loopback HTTP
# ---------------------------------------------------------------------------------------------


class _ImageServer(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, tuple[int, dict[str, str], bytes]]
    hits: list[str]


class _ImageHandler(BaseHTTPRequestHandler):
    server: _ImageServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        status, headers, body = self.server.routes.get(self.path, (404, {}, b"no"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers and "X-No-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def image_server() -> Iterator[_ImageServer]:
    server = _ImageServer(("127.0.0.1", 0), _ImageHandler)
    server.routes = {}
    server.hits = []
    with serving(server):
        yield server


def _url(server: _ImageServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_download_with_allow_http(image_server: _ImageServer) -> None:
    image_server.routes["/img/cat%20one.gif?sig=1"] = (200, {"Content-Type": "text/plain"}, GIF89)
    image = load_image(_url(image_server, "/img/cat%20one.gif?sig=1"), allow_http=True)
    assert image.data == GIF89
    assert image.content_type == "image/gif"  # from the bytes, not the server's header
    assert image.name == "cat_one.gif"


def test_download_with_a_given_session(image_server: _ImageServer) -> None:
    image_server.routes["/a.png"] = (200, {}, PNG)
    with requests.Session() as session:
        image = load_image(_url(image_server, "/a.png"), session=session, allow_http=True)
    assert image.data == PNG


def test_plain_http_is_refused_without_allow_http(image_server: _ImageServer) -> None:
    image_server.routes["/a.png"] = (200, {}, PNG)
    with pytest.raises(ImageError, match="https"):
        load_image(_url(image_server, "/a.png"))
    assert image_server.hits == []


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(ImageError, match="scheme"):
        load_image(url)


def test_download_too_large_by_content_length(image_server: _ImageServer) -> None:
    image_server.routes["/big.png"] = (200, {}, PNG)
    with pytest.raises(ImageError, match="over the limit"):
        load_image(_url(image_server, "/big.png"), allow_http=True, max_bytes=10)


def test_download_too_large_without_content_length(image_server: _ImageServer) -> None:
    image_server.routes["/stream.png"] = (200, {"X-No-Length": "1"}, PNG * 100)
    with pytest.raises(ImageError, match="over the limit"):
        load_image(_url(image_server, "/stream.png"), allow_http=True, max_bytes=len(PNG) * 10)


def test_download_error_status(image_server: _ImageServer) -> None:
    with pytest.raises(ImageError, match="HTTP 404"):
        load_image(_url(image_server, "/missing.png"), allow_http=True)


def test_download_non_image(image_server: _ImageServer) -> None:
    image_server.routes["/page"] = (200, {"Content-Type": "image/png"}, b"<html></html>")
    with pytest.raises(ImageError, match="not a PNG"):
        load_image(_url(image_server, "/page"), allow_http=True)


def test_download_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ImageError, match="download failed") as caught:
        load_image(f"http://127.0.0.1:{port}/a.png", allow_http=True, timeout=(1, 1))
    assert isinstance(caught.value.__cause__, requests.RequestException)
