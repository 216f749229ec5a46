"""The JSON API's batch endpoint (`POST /batch/storage/v1`) for the local Cloud Storage server.

A batch is one `multipart/mixed` request whose parts are whole HTTP requests (`application/http`),
at most 100 (Google's limit); the answer is one `multipart/mixed` response, a part for each request
in the same order, each a whole HTTP response, named `<response-ID>` after its request's Content-ID.
The outer request's headers apply to every part except its own Content-* headers (a part's own
headers override them): the caller's token is the outer one.

Each part is served exactly as the same request sent alone: through the server's routes, IAM checks,
holds and retention (`serve_part` is the server's own dispatch). gcp-storage-emulator's batch
handler runs a few object calls on the storage directly, past all of that, so it is not used.
https://cloud.google.com/storage/docs/batch
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

MAX_PARTS = 100  # Google's limit for one batch request
PATH = "/batch/storage/v1"


class Headers(dict[str, str]):
    """Request headers with case-insensitive `get`, as http.server's message gives the emulator."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(str(key).lower())


class Part:
    """One request of a batch, shaped as the http.server handler the emulator's router reads
    (`path`, `headers`, `rfile`, `server`, `storage`) and writes its answer to (`send_response`,
    `send_header`, `end_headers`, `wfile`)."""

    def __init__(self, outer: Any, method: str, path: str, headers: Headers, body: bytes) -> None:
        self.server = outer.server
        self.storage = outer.storage
        self.command, self.path, self.headers = method, path, headers
        self.rfile = io.BytesIO(body)
        self.wfile = io.BytesIO()

    def send_response(self, code: int, message: str | None = None) -> None:
        self.wfile.write(f"HTTP/1.1 {code} {message or HTTPStatus(code).phrase}\r\n".encode())

    def send_header(self, key: str, value: str) -> None:
        self.wfile.write(f"{key}: {value}\r\n".encode())

    def end_headers(self) -> None:
        self.wfile.write(b"\r\n")


def _boundary(content_type: str) -> str | None:
    kind, _, rest = content_type.partition(";")
    if kind.strip().lower() != "multipart/mixed":
        return None
    for param in rest.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"')
    return None


def _headers(lines: list[bytes]) -> Headers:
    headers = Headers()
    for line in lines:
        key, sep, value = line.decode("latin-1").partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    return headers


def _head(data: bytes) -> tuple[list[bytes], bytes]:
    """The lines before the first empty line of `data`, and what follows it. MIME lines may end in
    CRLF or LF alone (Google's Python client writes its part headers with LF)."""
    found = _BLANK.search(data)
    head, rest = (data[: found.start()], data[found.end() :]) if found else (data, b"")
    return [line.rstrip(b"\r") for line in head.split(b"\n")], rest


_BLANK = re.compile(rb"\r?\n\r?\n")


def _parts(body: bytes, boundary: str) -> list[tuple[Headers, bytes]]:
    """The parts of a multipart body: (part headers, part content)."""
    pieces = body.split(b"--" + boundary.encode())
    parts = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):  # the closing delimiter
            break
        lines, content = _head(piece.removeprefix(b"\r\n").removeprefix(b"\n"))
        parts.append((_headers(lines), content.removesuffix(b"\n").removesuffix(b"\r")))
    return parts


def _request(content: bytes, outer: Headers) -> tuple[str, str, Headers, bytes]:
    """(method, path with query, headers, body) of one part's HTTP request; ValueError if it is
    not one."""
    lines, body = _head(content)
    method, target, _ = lines[0].decode("latin-1").split(" ")
    if "://" in target:  # a full URL: its path (Google asks for the path only)
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    if not target.startswith("/"):
        raise ValueError(f"not a path: {target}")
    headers = Headers({k: v for k, v in outer.items() if not k.startswith("content-")})
    headers.update(_headers(lines[1:]))
    length = headers.get("Content-Length")
    if length:
        body = body[: int(length)]
    elif body:  # the part's end ends the body (Google's Python client sends no length)
        headers["content-length"] = str(len(body))
    return method, target, headers, body


def reply(code: int, headers: dict[str, str], body: bytes) -> bytes:
    """One part's whole HTTP response."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"HTTP/1.1 {code} {HTTPStatus(code).phrase}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _error(code: int, message: str) -> bytes:
    error = {"code": code, "message": message, "errors": [{"reason": "invalid", "message": message}]}
    return reply(code, {"Content-Type": "application/json"}, json.dumps({"error": error}).encode())


Request = tuple[str, str, str, Headers, bytes]  # content ID, method, path, headers, body


def requests_of(content_type: str, headers: dict[str, str], body: bytes) -> list[Request] | str:
    """The requests of a batch (the outer request's Content-Type, headers and body), or why it
    is refused."""
    boundary = _boundary(content_type)
    if boundary is None:
        return "a batch request is multipart/mixed with a boundary"
    parts = _parts(body, boundary)
    if len(parts) > MAX_PARTS:
        return f"a batch holds at most {MAX_PARTS} requests, this one {len(parts)}"
    outer = Headers({k.lower(): v for k, v in headers.items()})
    found = []
    for n, (part_headers, content) in enumerate(parts, 1):
        content_id = part_headers.get("Content-ID", "").strip("<>") or str(n)
        try:
            found.append((content_id, *_request(content, outer)))
        except ValueError:
            found.append((content_id, "", "", Headers(), b""))  # answered 400 alone
    return found


def answer(replies: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """The batch response (Content-Type, body) of each request's (content ID, whole response)."""
    out = io.BytesIO()
    mark = f"batch_{uuid.uuid4().hex}"
    for content_id, data in replies:
        out.write(
            f"--{mark}\r\nContent-Type: application/http\r\nContent-ID: <response-{content_id}>\r\n\r\n".encode()
        )
        out.write(data + b"\r\n")
    out.write(f"--{mark}--\r\n".encode())
    return f"multipart/mixed; boundary={mark}", out.getvalue()


def serve_batch(outer: Any, body: bytes, serve_part: Callable[[Part], None]) -> tuple[int, str, bytes]:
    """Answer the batch request `body` that the http.server handler `outer` received: (status,
    Content-Type, body). `serve_part` serves one part as the server serves a request."""
    found = requests_of(outer.headers.get("Content-Type", ""), dict(outer.headers.items()), body)
    if isinstance(found, str):
        return 400, "text/plain", found.encode()
    replies = []
    for content_id, method, path, headers, data in found:
        if not method:
            replies.append((content_id, _error(400, "a batch part is not an HTTP request")))
            continue
        if path.startswith(PATH):
            replies.append((content_id, _error(400, "a batch request may not hold another batch request")))
            continue
        part = Part(outer, method, path, headers, data)
        serve_part(part)
        replies.append((content_id, part.wfile.getvalue()))
    return 200, *answer(replies)
