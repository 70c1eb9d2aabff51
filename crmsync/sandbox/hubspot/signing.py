"""Webhook request signatures as HubSpot computes them (docs/hubspot.md §8.4)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

# v3 signs the URI with only these percent-encodings decoded
_V3_DECODE = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(",
              "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


def v3_uri(uri: str) -> str:
    out = uri
    for enc, dec in _V3_DECODE.items():
        out = out.replace(enc, dec).replace(enc.lower(), dec)
    return out


def sign_v1(secret: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + body).hexdigest()


def sign_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + method.encode() + uri.encode() + body).hexdigest()


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    msg = method.encode() + v3_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), msg, hashlib.sha256).digest()).decode()


def render_delivery(url: str, events: list[dict], attempt: int, secret: str, legacy_version: str = "v1",
                    send_v3: bool = True) -> tuple[bytes, dict]:
    """Body and headers for one webhook POST; each attempt is re-signed with a fresh timestamp."""
    body = json.dumps([{**e, "attemptNumber": attempt} for e in events], separators=(",", ":")).encode()
    headers = {"User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) (crmsync sandbox)"}
    if legacy_version == "v2":
        headers["X-HubSpot-Signature"] = sign_v2(secret, "POST", url, body)
        headers["X-HubSpot-Signature-Version"] = "v2"
    elif legacy_version == "v1":
        headers["X-HubSpot-Signature"] = sign_v1(secret, body)
        headers["X-HubSpot-Signature-Version"] = "v1"
    if send_v3:
        ts = str(int(time.time() * 1000))
        headers["X-HubSpot-Request-Timestamp"] = ts
        headers["X-HubSpot-Signature-v3"] = sign_v3(secret, "POST", url, body, ts)
    return body, headers
