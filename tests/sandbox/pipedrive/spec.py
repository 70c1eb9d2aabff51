"""Official Pipedrive OpenAPI documents, prepared once per test session for ``SpecValidator``.

The YAML specs are converted to JSON with three documented adjustments, each because the spec is
stricter than Pipedrive's own documentation of the same responses:
- paths get their server prefix (``/api/v2``, ``/api/v1``) so one validator serves both versions;
- properties the docs and examples show as ``null`` (``next_cursor`` on the last page, unlinked
  ``org_id``/``person_id``/``deal_id``, unset dates and address parts, a search item's
  ``organization`` when there is none, as the deal search declares and its example shows, ...)
  are made nullable;
- every operation gets a ``default`` response with the error envelope the v2 spec itself declares
  (its ``404`` schema: success/error/error_info/data/additional_data), since most operations list no
  error responses though every endpoint can answer 400/401/404/429;
- v1 ``format: date-time`` is dropped: v1 returns ``YYYY-MM-DD HH:MM:SS`` (the spec's own examples).
"""
from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

import yaml

from crmsync.sandbox.spec_check import SpecValidator

SPEC_DIR = Path(__file__).resolve().parents[2] / "specs" / "pipedrive"
NULLABLE = {
    "next_cursor", "org_id", "person_id", "deal_id", "lead_id", "project_id", "picture_id", "address",
    "location", "due_date", "due_time", "duration", "marked_as_done_time", "expected_close_date", "won_time",
    "lost_time", "stage_change_time", "archive_time", "public_description", "priority", "note", "color",
    "rotten_days", "country", "admin_area_level_1", "admin_area_level_2", "locality", "sublocality", "route",
    "street_number", "postal_code", "subpremise", "organization",
}


def _relax(node, v1: bool) -> None:
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            for name, sub in props.items():
                if name in NULLABLE and isinstance(sub, dict):
                    sub["nullable"] = True
        if v1 and node.get("format") == "date-time":
            del node["format"]
        for value in node.values():
            _relax(value, v1)
    elif isinstance(node, list):
        for value in node:
            _relax(value, v1)


def _error_response(v2: dict) -> dict:
    return v2["paths"]["/deals/{id}/convert/status/{conversion_id}"]["get"]["responses"]["404"]


def build_validator(out_dir: Path) -> SpecValidator:
    docs = {}
    for name in ("v1", "v2"):
        with open(SPEC_DIR / f"openapi-{name}.yaml") as fh:
            docs[name] = yaml.load(fh, Loader=yaml.CSafeLoader)
    error = json.loads(json.dumps(_error_response(docs["v2"])))
    files = []
    for name, doc in docs.items():
        prefix = "/api/v2" if name == "v2" else "/api/v1"
        doc["paths"] = {prefix + path: item for path, item in doc["paths"].items()}
        for item in doc["paths"].values():
            for op in item.values():
                if isinstance(op, dict) and "responses" in op:
                    op["responses"].setdefault("default", error)
        _relax(doc, v1=name == "v1")
        path = out_dir / f"pipedrive-{name}.json"
        path.write_text(json.dumps(doc))
        files.append(path)
    return SpecValidator.cached(files)


@lru_cache(maxsize=1)
def cached_validator() -> SpecValidator:
    """The prepared validator, built once per process (about a second: the v1 YAML is 2.7 MB)."""
    return build_validator(Path(tempfile.mkdtemp(prefix="pipedrive-spec-")))


def check_response(validator: SpecValidator, method: str, raw_path: str, status: int, body: bytes,
                   content_type: str) -> list[str]:
    """Violations of one sandbox response; admin and OAuth paths are not Pipedrive API operations."""
    path = "/api" + raw_path if raw_path.startswith("/v1/") else raw_path
    if path.startswith(("/_sandbox", "/oauth/")):
        return []
    return validator.check(method, path, status, body, content_type)


def token_costs() -> dict[tuple[str, str], int]:
    """(METHOD, /api/vN/path) -> x-token-cost, straight from the YAML."""
    out = {}
    for name in ("v1", "v2"):
        with open(SPEC_DIR / f"openapi-{name}.yaml") as fh:
            doc = yaml.load(fh, Loader=yaml.CSafeLoader)
        prefix = "/api/v2" if name == "v2" else "/api/v1"
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if isinstance(op, dict) and "x-token-cost" in op:
                    out[(method.upper(), prefix + path)] = op["x-token-cost"]
    return out
