"""Tiny request/response helpers shared by the sandbox WSGI apps (no framework: per-request cost
matters, the list benchmark must stay well above 1,000 requests/s).

How a platform plugs in: ``req = Request(environ)`` gives ``method``, ``path`` (percent-decoded
segments in ``req.segments``), ``query`` (``dict[str, list[str]]``), ``header(name)``, ``body``
and ``json()`` (raises ``BadJson``); answer with ``respond(start_response, status, body, headers)``
or ``respond_json(...)``. ``STATUS_LINES`` maps codes to HTTP status lines.
"""
from __future__ import annotations

import json
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote

import orjson

STATUS_LINES = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}
STATUS_LINES.update({207: "207 Multi-Status", 429: "429 Too Many Requests"})


class BadJson(ValueError):
    """The request body is not the JSON the endpoint needs."""


class Request:
    __slots__ = ("_body", "_query", "environ", "method", "path", "query_string", "raw_path", "segments")

    def __init__(self, environ: dict):
        self.environ = environ
        self.method = environ["REQUEST_METHOD"]
        self.raw_path = environ.get("PATH_INFO", "/") or "/"
        self.segments = [unquote(s) for s in self.raw_path.strip("/").split("/")] if self.raw_path != "/" else []
        self.path = "/" + "/".join(self.segments)
        self.query_string = environ.get("QUERY_STRING", "")
        self._query = None
        self._body = environ.get("sandbox.body")

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            q: dict[str, list[str]] = {}
            for k, v in parse_qsl(self.query_string, keep_blank_values=True):
                q.setdefault(k, []).append(v)
            self._query = q
        return self._query

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            return self.environ.get(key, default)
        return self.environ.get("HTTP_" + key, default)

    @property
    def body(self) -> bytes:
        if self._body is None:
            stream = self.environ.get("wsgi.input")
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
            self._body = stream.read(length) if stream and length else b""
        return self._body

    def json(self, default=None):
        raw = self.body
        if not raw.strip():
            if default is not None:
                return default
            raise BadJson("request body is empty")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadJson(f"request body is not valid JSON: {exc}") from None


def respond(start_response, status: int, body: bytes = b"", headers: list | None = None,
            content_type: str | None = "application/json;charset=utf-8"):
    out = list(headers or ())
    if content_type and (body or status not in (204, 304)):
        out.append(("Content-Type", content_type))
    out.append(("Content-Length", str(len(body))))
    start_response(STATUS_LINES.get(status, f"{status} Status"), out)
    return [body]


def dumps(obj) -> bytes:
    """Compact UTF-8 JSON. orjson where it can (a list answer serialised per request spent half
    the sandbox's time in the stdlib encoder, on the same cores as the client it serves); the
    stdlib for what orjson refuses (integers beyond 64 bits, non-string keys)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def respond_json(start_response, status: int, obj, headers: list | None = None):
    return respond(start_response, status, b"" if obj is None else dumps(obj), headers)
