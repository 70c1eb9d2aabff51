"""One package per CRM. A package `crmsync/platforms/<name>/` that exposes `adapter_class`
(an `crmsync.platforms.base.Adapter` subclass) is a platform; adding Salesforce means adding
its folder, nothing else."""
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
