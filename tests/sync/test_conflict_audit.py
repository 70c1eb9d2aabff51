"""Every resolution leaves an audit row, from the CLI as from the console; a typed value the field
refuses is a clear error and writes nothing."""
import json
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from crmsync.cli import main
from crmsync.db import session_scope
from crmsync.db.models import ConflictRecord, ConflictResolution


def cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _held(world):
    world.hs.seed(contacts=1, seed=5)
    world.sync()
    ext, local_id = next(iter(world.links().items()))
    world.local_edit("contact", local_id, first_name="Mine", phone="+1 1")
    world.hs.edit("contacts", ext, {"firstname": "Theirs", "phone": "+44 2"})
    world.sync()
    with session_scope(world.db_url) as s:
        return ext, local_id, s.scalar(select(ConflictRecord.id).where(ConflictRecord.tenant_id == world.tenant_id))


def test_cli_resolution_is_audited_with_the_push_that_followed(make):
    world = make(conflict_strategy="manual_review")
    ext, _local_id, conflict_id = _held(world)
    refused = cli("conflicts", "resolve", conflict_id, "--value", "phone=" + "9" * 101)
    assert refused.exit_code == 2 and "phone: at most 100 characters" in refused.stderr
    result = cli("conflicts", "resolve", conflict_id, "--value", "first_name=Agreed", "--json")
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.stdout)["push_job"]["job_id"]
    with session_scope(world.db_url) as s:
        audit = s.scalars(select(ConflictResolution).where(ConflictResolution.conflict_id == conflict_id)).all()
    assert len(audit) == 1
    row = audit[0]
    assert row.resolved_by == "cli" and row.how == "fields"
    assert row.before["local"] == {"first_name": "Mine", "phone": "+1 1"}
    assert row.before["remote"] == {"first_name": "Theirs", "phone": "+44 2"}
    assert row.after == {"first_name": "Agreed", "phone": "+44 2"}
    assert row.writes == {"local": {"first_name": "Agreed", "phone": "+44 2"}, "hubspot": {"first_name": "Agreed"}}
    assert row.push == {"jobs": [{"job_id": job_id, "status": "succeeded", "error": None}]}
    assert world.hs.state.records["contacts"][int(ext)].props["firstname"] == "Agreed"


def test_typed_values_are_converted_or_refused_by_the_field(make):
    from crmsync.sync.conflicts import typed_value
    from crmsync.sync.errors import ConflictResolutionError
    world = make(conflict_strategy="manual_review")
    _, _, conflict_id = _held(world)
    with session_scope(world.db_url) as s:
        conflict = s.get(ConflictRecord, conflict_id)
        assert typed_value(s, conflict, "lead_score", " 12.5 ") == 12.5
        assert typed_value(s, conflict, "tags", "b, a") == ["a", "b"]
        assert typed_value(s, conflict, "phone", "") is None
        for field, text, problem in (("lead_score", "twelve", "lead_score: Not a valid number"),
                                     ("email", "not-an-email", "email: Not a valid email"),
                                     ("company_id", "00000000-0000-0000-0000-000000000001", "no company"),
                                     ("owner_id", "x", "not a field")):
            with pytest.raises(ConflictResolutionError, match=re.escape(problem)):
                typed_value(s, conflict, field, text)
