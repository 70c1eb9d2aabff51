"""Bad input on the command line: every case is the real `crmsync` script in a subprocess, answered
with exit 2 and one line on stderr (exit 1 and one line when the database cannot be reached),
never a traceback."""
import json
import os
import shutil
import subprocess

from crmsync.db import session_scope
from tests.fixtures.db import TEST_SECRET_KEY
from tests.fixtures.factories import make_secret, make_tenant

CRMSYNC = shutil.which("crmsync") or os.path.join(os.path.dirname(os.sys.executable), "crmsync")
LONG = "a" * 300
NOT_UTF8 = os.fsdecode(b"\xff\xfe")     # what a shell's $'\xff\xfe' puts in argv


def _cases(tenant_id: str, vault_id: str, rules_file: str, event_file: str) -> list[tuple[str, list[str]]]:
    create = ["configs", "create", "--tenant", tenant_id, "--platform", "hubspot", "--credentials", vault_id]
    return [
        ("tenant name of 300 characters", ["tenants", "create", "--name", LONG]),
        ("tenant name not UTF-8", ["tenants", "create", "--name", NOT_UTF8]),
        ("credentials name of 300 characters", ["credentials", "set", "--name", LONG, "--platform", "hubspot",
                                                "--from-env", "HS_TOKEN"]),
        ("credentials name not UTF-8", ["credentials", "set", "--name", NOT_UTF8, "--platform", "hubspot",
                                        "--from-env", "HS_TOKEN"]),
        ("configs list --tenant zz", ["configs", "list", "--tenant", "zz"]),
        ("webhooks list --tenant zz", ["webhooks", "list", "--tenant", "zz"]),
        ("conflicts list --tenant zz", ["conflicts", "list", "--tenant", "zz"]),
        ("conflicts list --status not UTF-8", ["conflicts", "list", "--status", NOT_UTF8]),
        ("rules list --tenant not UTF-8", ["rules", "list", "--tenant", NOT_UTF8]),
        ("rules list --tenant zz", ["rules", "list", "--tenant", "zz"]),
        ("rules runs --tenant zz", ["rules", "runs", "--tenant", "zz"]),
        ("jobs list --config zz", ["jobs", "list", "--config", "zz"]),
        ("jobs list --limit -1", ["jobs", "list", "--limit", "-1"]),
        ("jobs list with a 21-digit limit", ["jobs", "list", "--limit", "1" * 21]),
        ("rules runs --limit 0", ["rules", "runs", "--limit", "0"]),
        ("--frequency 1099511627776", [*create, "--account-id", "1", "--frequency", "1099511627776"]),
        ("--base-url of 520 characters", [*create, "--account-id", "2", "--base-url",
                                          "https://example.com/" + "p" * 500]),
        ("rules test with a shift of 99999999999 weeks", ["rules", "test", rules_file, "--event", event_file]),
        ("rules apply with a shift of 99999999999 weeks", ["rules", "apply", rules_file, "--tenant", tenant_id]),
        ("unknown option", ["tenants", "list", "--colour"]),
    ]


def _run_all(cases, env) -> dict[str, subprocess.CompletedProcess]:
    # All at once: each is a fresh interpreter, and the cases share nothing but the database.
    procs = {name: subprocess.Popen([CRMSYNC, *args, "--json"] if args[0] != "tenants" or args[1] != "list"
                                    else [CRMSYNC, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, errors="backslashreplace")
             for name, args in cases}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        out[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return out


def _one_line(result) -> bool:
    lines = result.stderr.splitlines()
    return len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr


def test_bad_input_exits_2_with_one_line_and_writes_nothing(db_url, tmp_path):
    with session_scope(db_url) as s:
        tenant_id, vault_id = make_tenant(s).id, make_secret(s).id
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"name": "far", "trigger": {"type": "meeting_scheduled"}, "actions": [
        {"type": "create_task", "params": {"title": "t", "due_date": "{now + 99999999999 weeks}"}}]}]))
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"type": "meeting_scheduled", "contact_email": "ada@example.org",
                                 "meeting_date": "2025-03-01T10:00:00Z"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env.update(CRMSYNC_DATABASE_URL=db_url, CRMSYNC_SECRET_KEY=TEST_SECRET_KEY, HS_TOKEN="pat-na1-secret")
    results = _run_all(_cases(tenant_id, vault_id, str(rules), str(event)), env)
    wrong = {name: (r.returncode, r.stderr[-400:]) for name, r in results.items()
             if r.returncode != 2 or not _one_line(r)}
    assert wrong == {}
    assert all(r.stdout == "" for r in results.values())
    # each for its own reason
    for name in ("rules test with a shift of 99999999999 weeks", "rules apply with a shift of 99999999999 weeks"):
        assert "due_date: shifts dates by more than 100 years (99999999999 weeks)" in results[name].stderr
    with session_scope(db_url) as s:
        from sqlalchemy import func, select

        from crmsync.db.models import AutomationRule, SyncConfig, Tenant, VaultSecret
        assert [s.scalar(select(func.count()).select_from(t)) for t in (Tenant, VaultSecret, SyncConfig,
                                                                         AutomationRule)] == [1, 1, 0, 0]


def test_unreachable_database_exits_1_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env.update(CRMSYNC_DATABASE_URL="postgresql+psycopg://nobody:pw@127.0.0.1:1/none",
               CRMSYNC_SECRET_KEY=TEST_SECRET_KEY, HS_TOKEN="x")
    cases = [("tenants list", ["tenants", "list"]), ("jobs list", ["jobs", "list"]),
             ("conflicts list", ["conflicts", "list"]), ("webhooks list", ["webhooks", "list"]), ("rules list", ["rules", "list"]),
             ("credentials set", ["credentials", "set", "--name", "n", "--platform", "hubspot",
                                  "--from-env", "HS_TOKEN"])]
    results = _run_all(cases, env)
    wrong = {name: (r.returncode, r.stderr[-400:]) for name, r in results.items()
             if r.returncode != 1 or not _one_line(r)}
    assert wrong == {}
    # The line says what failed and where, without the password.
    line = results["tenants list"].stderr
    assert "127.0.0.1" in line and "Connection refused" in line and ":pw@" not in line
