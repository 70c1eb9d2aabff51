"""One package per CRM. A package `crmsync/platforms/<name>/` that exposes `adapter_class`
(an `crmsync.platforms.base.Adapter` subclass) is a platform; adding Salesforce means adding
its folder, nothing else. Every platform folder holds the same files:

    __init__.py   `adapter_class`
    adapter.py    the `Adapter` the sync engine sees (unified records in and out)
    client.py     the API calls, a `crmsync.platforms.http.CRMClient` (the one request loop)
    auth.py       credentials: token, OAuth refresh
    errors.py     the one place a CRM answer becomes a `crmsync.platforms.errors` error
    limits.py     default rate limits (`account_limits`) and the rate headers (`observations`)
    mapping.py    CRM records <-> the unified shape
    webhooks.py   verifying and parsing the CRM's webhook deliveries
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path


@cache
def platform_names() -> tuple[str, ...]:
    here = Path(__file__).parent
    return tuple(sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.ispkg))


def adapter_class(platform: str):
    if platform not in platform_names():
        raise KeyError(f"unknown platform {platform!r}; known: {', '.join(platform_names())}")
    return importlib.import_module(f"crmsync.platforms.{platform}").adapter_class


def limits_of(platform: str):
    """The platform's `limits` module (`account_limits(credentials)`, `observations(headers, kind)`)."""
    adapter_class(platform)  # refuses an unknown platform
    return importlib.import_module(f"crmsync.platforms.{platform}.limits")
