"""A small threaded HTTP/1.1 server that runs any WSGI app on 127.0.0.1, for the sandbox CRMs.

How a platform plugs in: build a WSGI callable (``app(environ, start_response)``) and hand it to
``SandboxServer(app).start()``; that returns the base URL (``http://127.0.0.1:<free port>``).
``.stop()`` closes the listening socket and every kept-alive connection, then joins the thread.

Why our own gateway and not werkzeug's dev server: keep-alive plus ``disable_nagle_algorithm``
(Python's http.server otherwise stalls ~40 ms per request on keep-alive), no per-request logging, a
lean environ, and a way to drop a connection on purpose (fault injection): the app raises
``DropConnection`` (or calls ``environ["sandbox.drop_connection"]()``) and the client sees the socket
close with no response. Measured on the 2-core box: ~2x the requests/s of werkzeug's threaded
``make_server`` on the same app.
"""
from __future__ import annotations

import io
import socket
import socketserver
import sys
import threading
import traceback
from collections.abc import Callable, Iterable

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class DropConnection(Exception):
    """Raised by an app to close the client connection without sending a response."""


class SandboxServerError(RuntimeError):
    """The server could not start or stop."""


class _Handler(socketserver.StreamRequestHandler):
    """HTTP/1.1 with keep-alive; parses the request line and headers itself (http.client's email-based
    header parser costs more than the whole sandbox app on a list request)."""

    disable_nagle_algorithm = True  # else each keep-alive response waits for the peer's delayed ACK
    timeout = 60  # idle keep-alive connections are closed after a minute
    wbufsize = 0

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.track(self.connection, False)

    def handle(self) -> None:
        self.dropped = False
        try:
            while self._one_request():
                pass
        except (TimeoutError, ConnectionError, OSError, ValueError):
            pass

    def _read_headers(self) -> list[tuple[str, str]] | None:
        headers = []
        readline = self.rfile.readline
        while True:
            line = readline(65537)
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                return headers
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
            if len(headers) > 200:
                raise ValueError("too many headers")

    def _read_body(self, headers: dict) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _one_request(self) -> bool:
        """Serve one request; False when the connection should close."""
        line = self.rfile.readline(65537)
        if not line:
            return False
        parts = line.decode("latin-1").split()
        if len(parts) != 3:
            if not parts:
                return True  # stray CRLF between requests
            self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        method, target, version = parts
        header_list = self._read_headers()
        if header_list is None:
            return False
        headers = {k.lower(): v for k, v in header_list}
        conn_hdr = headers.get("connection", "").lower()
        keep_alive = (version == "HTTP/1.1" and conn_hdr != "close") or conn_hdr == "keep-alive"
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self._read_body(headers)
        path, _, query = target.partition("?")
        if path.startswith(("http://", "https://")):  # absolute-form request target
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,  # still percent-encoded; apps decode (HubSpot ids like jon%40x.com)
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": str(self.server.server_address[1]),
            "SERVER_PROTOCOL": version,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": headers.get("content-type", ""),
            "SCRIPT_NAME": "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": self.server.scheme,
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "sandbox.body": body,
            "sandbox.drop_connection": self._drop,
        }
        for key, value in header_list:
            name = "HTTP_" + key.upper().replace("-", "_")
            if name not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[name] = value
        status_headers: list = []

        def start_response(status, response_headers, exc_info=None):
            status_headers[:] = [status, response_headers]
            return lambda data: None

        try:
            result = self.server.app(environ, start_response)
            try:
                payload = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        except DropConnection:
            self._drop()
            return False
        except Exception:  # noqa: BLE001 - a broken app must answer 500, not hang the client
            traceback.print_exc()
            status_headers[:] = ["500 Internal Server Error", [("Content-Type", "text/plain")]]
            payload = b"sandbox app crashed"
        if self.dropped:
            return False
        status, response_headers = status_headers
        out = [f"HTTP/1.1 {status}\r\n".encode("latin-1")]
        has_length = False
        for k, v in response_headers:
            if k.lower() == "content-length":
                has_length = True
            out.append(f"{k}: {v}\r\n".encode("latin-1"))
        if not has_length:
            out.append(f"Content-Length: {len(payload)}\r\n".encode("latin-1"))
        if not keep_alive:
            out.append(b"Connection: close\r\n")
        out.append(b"\r\n")
        if method != "HEAD":
            out.append(payload)
        self.wfile.write(b"".join(out))
        return keep_alive

    def _drop(self) -> None:
        self.dropped = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _ThreadedServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    scheme = "http"

    def __init__(self, addr, app: WSGIApp):
        self.app = app
        self._conns: set = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def track(self, conn, alive: bool) -> None:
        with self._conns_lock:
            (self._conns.add if alive else self._conns.discard)(conn)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class SandboxServer:
    """Run a WSGI app on 127.0.0.1 in a daemon thread.

    >>> server = SandboxServer(app)          # port=0 picks a free port
    >>> base_url = server.start()            # "http://127.0.0.1:54321"
    >>> server.stop()

    Also a context manager: ``with SandboxServer(app) as base_url: ...``. With ``ssl_context`` (an
    ``ssl.SSLContext`` holding the server certificate) it serves HTTPS, for clients that only build
    https URLs.
    """

    def __init__(self, app: WSGIApp, host: str = "127.0.0.1", port: int = 0, ssl_context=None):
        self.app = app
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._httpd: _ThreadedServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise SandboxServerError("server not started")
        return f"{self._httpd.scheme}://{self.host}:{self._httpd.server_address[1]}"

    def start(self) -> str:
        if self._httpd is not None:
            return self.base_url
        try:
            self._httpd = _ThreadedServer((self.host, self.port), self.app)
        except OSError as exc:
            raise SandboxServerError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        if self.ssl_context is not None:
            self._httpd.socket = self.ssl_context.wrap_socket(self._httpd.socket, server_side=True)
            self._httpd.scheme = "https"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="sandbox-http", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self, timeout: float = 5.0) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def serve_until_interrupted(self) -> None:
        """Start (if needed) and block until Ctrl-C; used by ``crmsync sandbox serve``."""
        try:
            self.start()
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
