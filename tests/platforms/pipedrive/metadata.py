"""A Pipedrive account's metadata as the mapper tests use it (field hashes built like real ones)."""
from __future__ import annotations

import hashlib

from crmsync.platforms.pipedrive.mapping import PipedriveMetadata


def key(obj: str, name: str) -> str:
    return hashlib.sha1(f"test:{obj}:{name}".encode()).hexdigest()


def _custom(obj: str, name: str, field_type: str, options: dict | None = None) -> dict:
    return {"key": key(obj, name), "name": name, "field_type": field_type, "custom": True,
            "options": options or {}}


def _standard(k: str, field_type: str = "varchar", options: dict | None = None) -> dict:
    return {"key": k, "name": k, "field_type": field_type, "custom": False, "options": options or {}}


def account_metadata() -> PipedriveMetadata:
    return PipedriveMetadata(
        fields={
            "person": [
                _standard("name"), _standard("emails"), _standard("phones"), _standard("job_title"),
                _standard("notes"), _standard("postal_address", "address"),
                _standard("label_ids", "set", {"7": "Customer", "8": "Hot lead", "9": "VIP"}),
                _custom("person", "Tier", "enum", {"31": "Gold", "32": "Silver"}),
                _custom("person", "Score", "double"),
                _custom("person", "Lead Source", "varchar"),
                _custom("person", "Interests", "set", {"41": "golf", "42": "sailing", "43": "chess"}),
                _custom("person", "Birthday note", "text"),
            ],
            "organization": [
                _standard("name"), _standard("address", "address"), _standard("website"),
                _standard("industry"), _standard("employee_count", "double"),
                _standard("annual_revenue", "double"),
                _custom("organization", "Domain", "varchar"),
                _custom("organization", "Segment", "enum", {"51": "SMB", "52": "Enterprise"}),
            ],
            "deal": [
                _standard("title"), _standard("value", "monetary"),
                _custom("deal", "Description", "text"),
                _custom("deal", "ARR", "monetary"),
            ],
            "activity": [
                _standard("subject"), _standard("type"),
                _standard("priority", "enum", {"1": "Low", "2": "Medium", "3": "High"}),
                _custom("activity", "Outcome", "varchar"),
            ],
        },
        stages={"1": {"name": "Qualified", "pipeline_id": 1}, "2": {"name": "Proposal", "pipeline_id": 1},
                "3": {"name": "Qualified", "pipeline_id": 2}, "4": {"name": "Won back", "pipeline_id": 2}},
        pipelines={"1": "Sales", "2": "Renewals"},
        activity_types=["call", "meeting", "email", "task", "deadline", "lunch"],
    )
