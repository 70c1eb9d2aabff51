"""Check sandbox responses against the official OpenAPI documents of the real CRM (tests only).

How a platform plugs in: ``SpecValidator(spec_files, path_aliases=fn)`` loads OpenAPI 3.0 JSON files
once (cache them per process with ``SpecValidator.cached(...)``); ``check(method, path, status,
body, content_type)`` finds the operation whose path template matches (literal segments beat
parameters; ``path_aliases(path)`` may yield alternative spellings, e.g. HubSpot's ``deals`` ->
``0-3``), picks the response for the status (or ``default``) and validates the JSON body with the
OpenAPI 3.0 schema validator. It returns a list of human-readable violations (empty = valid).
Requires ``openapi-schema-validator`` (a dev dependency), imported lazily.
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

_PARAM = re.compile(r"\{[^/]+\}")


class _Operation:
    __slots__ = ("literal_score", "method", "responses", "spec", "template")

    def __init__(self, spec, template, method, responses):
        self.spec, self.template, self.method, self.responses = spec, template, method, responses
        self.literal_score = sum(1 for seg in template.split("/") if seg and not _PARAM.fullmatch(seg))


class _Spec:
    def __init__(self, path: Path):
        self.name = path.name
        self.doc = json.loads(path.read_text())
        self.components = self.doc.get("components", {})
        self._validators: dict = {}

    def resolve(self, obj):
        while isinstance(obj, dict) and "$ref" in obj and obj["$ref"].startswith("#/"):
            node = self.doc
            for part in obj["$ref"][2:].split("/"):
                node = node[part]
            obj = node
        return obj

    def validator(self, schema: dict):
        key = json.dumps(schema, sort_keys=True)
        v = self._validators.get(key)
        if v is None:
            from jsonschema import FormatChecker
            from openapi_schema_validator import OAS30Validator

            root = {"allOf": [schema], "components": self.components}
            v = self._validators[key] = OAS30Validator(root, format_checker=FormatChecker())
        return v


class SpecValidator:
    _cache: ClassVar[dict] = {}
    _cache_lock = threading.Lock()

    def __init__(self, spec_files: Iterable[Path | str], path_aliases: Callable[[str], Iterable[str]] | None = None):
        self.path_aliases = path_aliases
        self._ops: list[tuple[re.Pattern, _Operation]] = []
        self._lock = threading.Lock()
        for file in spec_files:
            spec = _Spec(Path(file))
            for template, item in spec.doc.get("paths", {}).items():
                regex = re.compile("^" + _PARAM.sub("[^/]+", re.escape(template).replace(r"\{", "{").replace(r"\}", "}")) + "$")
                for method, op in item.items():
                    if method in ("get", "post", "put", "patch", "delete"):
                        self._ops.append((regex, _Operation(spec, template, method.upper(), op.get("responses", {}))))
        self._find = lru_cache(maxsize=4096)(self._find_uncached)

    @classmethod
    def cached(cls, spec_files: Iterable[Path | str], path_aliases=None) -> SpecValidator:
        key = tuple(sorted(str(f) for f in spec_files))
        with cls._cache_lock:
            if key not in cls._cache:
                cls._cache[key] = cls(key, path_aliases)
            return cls._cache[key]

    def _find_uncached(self, method: str, path: str) -> _Operation | None:
        candidates = [path, *(self.path_aliases(path) if self.path_aliases else ())]
        best = None
        for cand in candidates:
            for regex, op in self._ops:
                if (op.method == method and regex.match(cand)
                        and (best is None or op.literal_score > best.literal_score)):
                    best = op
        return best

    def operation(self, method: str, path: str) -> str | None:
        op = self._find(method.upper(), path)
        return f"{op.spec.name} {op.method} {op.template}" if op else None

    def check(self, method: str, path: str, status: int, body: bytes, content_type: str = "") -> list[str]:
        where = f"{method} {path} -> {status}"
        op = self._find(method.upper(), path)
        if op is None:
            return [f"{where}: no operation in the specs matches"]
        response = op.responses.get(str(status)) or op.responses.get("default")
        if response is None:
            return [f"{where}: status not declared by {op.template}"]
        response = op.spec.resolve(response)
        content = response.get("content") or {}
        if not content:
            return [f"{where}: spec declares no body but {len(body)} bytes were sent"] if body else []
        media = content.get("application/json") or content.get("*/*") or next(iter(content.values()))
        schema = op.spec.resolve(media.get("schema") or {})
        if not schema:
            return []
        if not body:
            return [f"{where}: spec declares a JSON body but the response is empty"]
        if content_type and "json" not in content_type:
            return [f"{where}: content type {content_type!r} is not JSON"]
        try:
            data = json.loads(body)
        except ValueError as exc:
            return [f"{where}: body is not JSON ({exc})"]
        with self._lock:  # validators cache lazily-built state; keep them single-threaded
            validator = op.spec.validator(schema)
            errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        return [f"{where} ({op.spec.name} {op.template}): {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
                for e in errors[:5]]
