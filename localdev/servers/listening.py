"""The HTTP server class of the local servers: http.server's threading server with a real listen backlog.

socketserver listens with a backlog of 5. Clients that open many connections at once (16 copy
threads, each request on a new connection to an HTTP/1.0 server) overflow it; Linux then drops the
connection attempt and the client tries again after 1 s. `nstat` (TcpExtListenOverflows) counted 84
in one 10,000-object backup and 60 in the plain copy loop of the same objects, on this machine.
Google's front ends have no such limit, so the local platform must not either: it would add random
1 s stalls to every parallel client, Backstop's and the plain scripts' alike.
"""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Server(ThreadingHTTPServer):
    request_queue_size = socket.SOMAXCONN
    daemon_threads = True


def answer(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], data: bytes) -> None:
    """Send `data` as the whole answer (its length set) with `status` and `headers`."""
    handler.send_response(status)
    for key, value in headers.items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
