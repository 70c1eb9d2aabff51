"""Reading what arrived: the raw body (bounded), its JSON, the URI the caller used, bearer tokens.

Signatures are computed over the raw bytes and the URI exactly as the CRM called it, so both are
taken from the WSGI environ before anything re-encodes them.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from crmsync.ingest.errors import BodyTooLarge, MalformedBody, Unauthenticated, UnsupportedContentType
from crmsync.platforms.base import strict_json

JSON_TYPES = ("application/json",)
XML_TYPES = ("text/xml", "application/xml", "application/soap+xml")


def raw_body(request: Request, max_bytes: int) -> bytes:
    """The body, refusing one over `max_bytes` from its Content-Length before reading, and reading at
    most one byte beyond the limit when the length is not declared (chunked).

    A read may return less than asked (a chunk at a time), so the body is read until it ends or
    passes the limit: one read of a chunked body used to stop at the limit and take what it had."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise BodyTooLarge(f"body of {declared} bytes is over the limit of {max_bytes}")
    chunks, size = [], 0
    try:
        while size <= max_bytes:
            chunk = request.stream.read(max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except RequestEntityTooLarge:  # werkzeug's own bound on an undeclared length (create_app sets it)
        size = max_bytes + 1
    if size > max_bytes:
        raise BodyTooLarge(f"body is over the limit of {max_bytes} bytes")
    return b"".join(chunks)


def require_json_type(request: Request) -> None:
    mimetype = (request.mimetype or "").lower()
    if mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        shown = mimetype or "none"
        raise UnsupportedContentType(f"expected Content-Type application/json, got {shown[:80]}")


def require_xml_type(request: Request) -> None:
    mimetype = (request.mimetype or "").lower()
    if mimetype not in XML_TYPES:
        raise UnsupportedContentType(f"expected Content-Type text/xml (SOAP), got {(mimetype or 'none')[:80]}")


def parse_json(data: bytes) -> Any:
    if not data:
        raise MalformedBody("the body is empty; expected JSON")
    try:
        return strict_json(data)
    except (ValueError, UnicodeDecodeError) as err:
        # strict_json's own refusals (depth, NUL, 1e999) say what is wrong; the decoder's say where.
        raise MalformedBody(f"the body is not valid JSON: {str(err)[:120]}") from None


def called_uri(request: Request) -> str:
    """scheme://host/path?query as the caller sent it (after ProxyFix, when proxies are trusted).

    The path and query come from RAW_URI/REQUEST_URI (gunicorn and werkzeug set them), so percent
    encodings stay exactly as sent; without them, PATH_INFO is re-quoted as a best effort."""
    env = request.environ
    raw = env.get("RAW_URI") or env.get("REQUEST_URI")
    if not raw or not raw.startswith("/"):
        path = quote(env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", ""), safe="/:@!$&'()*+,;=~%")
        query = env.get("QUERY_STRING", "")
        raw = path + ("?" + query if query else "")
    else:
        raw = env.get("SCRIPT_NAME", "") + raw if env.get("SCRIPT_NAME") and not raw.startswith(
            env["SCRIPT_NAME"]) else raw
    return f"{request.scheme}://{request.host}{raw}"


def bearer_token(request: Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("expected Authorization: Bearer <key>")
    return token
