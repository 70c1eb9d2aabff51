"""The foundation commands of CLI.md, run as a user runs them: the installed `crmsync` script
in a subprocess, against the test database."""
import json
import os
import shutil
import subprocess

import pytest

from tests.fixtures.db import TEST_SECRET_KEY

CRMSYNC = shutil.which("crmsync") or os.path.join(os.path.dirname(os.sys.executable), "crmsync")


@pytest.fixture
def run(db_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env.update(CRMSYNC_DATABASE_URL=db_url, CRMSYNC_SECRET_KEY=TEST_SECRET_KEY, HS_TOKEN="pat-na1-secret-value")

    def run(*args, stdin=None, extra_env=None):
        return subprocess.run([CRMSYNC, *args], capture_output=True, text=True, input=stdin,
                              env={**env, **(extra_env or {})}, timeout=60, check=False)
    return run


def ok_json(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_tenant_credentials_config_flow(run, hubspot_sandbox):
    assert run("db", "upgrade").returncode == 0
    tenant = ok_json(run("tenants", "create", "--name", "acme", "--json"))
    assert len(tenant["id"]) == 36
    assert [t["name"] for t in ok_json(run("tenants", "list", "--json"))] == ["acme"]
    secret = ok_json(run("credentials", "set", "--name", "hs", "--platform", "hubspot", "--from-env", "HS_TOKEN",
                         "--json", extra_env={"HS_TOKEN": hubspot_sandbox.token}))
    portal = str(hubspot_sandbox.app.options.portal_id)
    config = ok_json(run("configs", "create", "--tenant", tenant["id"], "--platform", "hubspot",
                         "--credentials", secret["id"], "--direction", "pull", "--frequency", "15",
                         "--strategy", "source_priority", "--source-priority", "hubspot,local",
                         "--entities", "contacts,deals", "--base-url", hubspot_sandbox.base_url,
                         "--account-id", portal, "--field-mapping", "lead_score=hubspotscore",
                         "--value-mapping", "deal.stage=qualified:qualifiedtobuy", "--json"))
    assert config["sync_direction"] == "pull" and config["sync_frequency_minutes"] == 15
    assert config["conflict_strategy"] == "source_priority" and config["source_priority"] == ["hubspot", "local"]
    assert config["sync_contacts"] and config["sync_deals"] and not config["sync_companies"]
    assert config["field_mappings"] == {"lead_score": "hubspotscore"} and config["account_id"] == portal
    assert config["value_mappings"] == {"deal.stage": {"qualified": "qualifiedtobuy"}}
    assert config["credentials_vault_id"] == secret["id"] and config["next_sync_at"]
    for field in ("enabled", "sync_activities", "sync_tasks", "api_base_url", "last_sync_at", "tenant_id"):
        assert field in config
    assert hubspot_sandbox.token not in json.dumps(config)
    shown = ok_json(run("configs", "show", config["id"], "--json"))
    assert shown["id"] == config["id"]
    assert ok_json(run("configs", "disable", config["id"], "--json"))["enabled"] is False
    assert ok_json(run("configs", "enable", config["id"], "--json"))["enabled"] is True
    assert len(ok_json(run("configs", "list", "--json"))) == 1


@pytest.fixture
def invoke(crmsync_env):
    """The same command in this process (click's runner): for the many bad-input cases."""
    from click.testing import CliRunner

    from crmsync.cli import main
    runner = CliRunner()

    def invoke(*args, stdin=None):
        return runner.invoke(main, list(args), input=stdin, catch_exceptions=False)
    return invoke


@pytest.mark.parametrize("args,field", [
    (["--platform", "zoho"], "platform"),
    (["--strategy", "coin_flip"], "conflict_strategy"),
    (["--frequency", "-5"], "sync_frequency_minutes"),
    (["--source-priority", "hubspot,salesforce9"], "source_priority"),
    (["--direction", "sideways"], "sync_direction"),
    (["--entities", "contacts,widgets"], "entities"),
    (["--field-mapping", "nonsense"], "field_mappings"),
    (["--base-url", "not a url"], "api_base_url"),
    (["--value-mapping", "deal.stage"], "value_mappings"),
    (["--value-mapping", "deal.colour=a:b"], "value_mappings"),
])
def test_bad_config_exits_2_naming_the_field(invoke, args, field):
    tenant = json.loads(invoke("tenants", "create", "--name", "t", "--json").stdout)
    secret = json.loads(invoke("credentials", "set", "--name", "hs", "--platform", "hubspot", "--stdin", "--json",
                               stdin="tok").stdout)
    base = {"--platform": "hubspot", "--account-id": "1"}
    flags = dict(zip(args[::2], args[1::2]))
    merged = {**base, **flags}
    argv = ["configs", "create", "--tenant", tenant["id"], "--credentials", secret["id"], "--json"]
    for k, v in merged.items():
        argv += [k, v]
    result = invoke(*argv)
    assert result.exit_code == 2, result.output
    assert field in result.stderr
    assert json.loads(invoke("configs", "list", "--json").stdout) == []


def test_unknown_tenant_and_bad_ids(run):
    secret = ok_json(run("credentials", "set", "--name", "hs", "--platform", "hubspot", "--stdin", "--json",
                         stdin="tok"))
    r = run("configs", "create", "--tenant", "00000000-0000-0000-0000-000000000000", "--platform", "hubspot",
            "--credentials", secret["id"], "--account-id", "1")
    assert r.returncode == 2 and "tenant" in r.stderr
    r = run("configs", "show", "not-an-id")
    assert r.returncode == 2 and "config" in r.stderr


def test_credentials_need_exactly_one_source(run):
    assert run("credentials", "set", "--name", "x", "--platform", "hubspot").returncode == 2
    r = run("credentials", "set", "--name", "x", "--platform", "hubspot", "--from-env", "NOPE_NOT_SET")
    assert r.returncode == 2 and "NOPE_NOT_SET" in r.stderr


def test_bad_setting_named(run):
    r = run("tenants", "list", extra_env={"CRMSYNC_DATABASE_URL": "mysql://x/y"})
    assert r.returncode == 2 and "CRMSYNC_DATABASE_URL" in r.stderr


def test_missing_secret_key_is_clear(run):
    r = run("credentials", "set", "--name", "x", "--platform", "hubspot", "--stdin", stdin="tok",
            extra_env={"CRMSYNC_SECRET_KEY": ""})
    assert r.returncode == 2 and "CRMSYNC_SECRET_KEY" in r.stderr


def test_downgrade_needs_a_target_and_yes(run, db_url, tmp_path):
    from sqlalchemy import inspect

    from crmsync.db import get_engine
    assert run("db", "upgrade").returncode == 0
    for args in ((), ("--revision", "base"), ("--yes",)):
        r = run("db", "downgrade", *args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "crm_sync_configs" in inspect(get_engine(db_url)).get_table_names()
    sqlite = {"CRMSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'down.db'}"}
    assert run("db", "upgrade", extra_env=sqlite).returncode == 0
    assert ok_json(run("db", "downgrade", "--revision", "base", "--yes", "--json", extra_env=sqlite)) == \
        {"revision": None}
    r = run("db", "downgrade", "--revision", "no-such-revision", "--yes", extra_env=sqlite)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_help_describes_domain_groups_as_they_describe_themselves():
    """`crmsync --help` reads DOMAIN_HELP instead of importing every domain; it must say what each
    group's own docstring says."""
    import importlib

    from crmsync.cli import DOMAIN_COMMANDS, DOMAIN_HELP
    assert set(DOMAIN_HELP) == set(DOMAIN_COMMANDS)  # a group left out would be imported by --help
    for name, text in DOMAIN_HELP.items():
        module, attr = DOMAIN_COMMANDS[name].split(":")
        group = getattr(importlib.import_module(module), attr)
        assert group.get_short_help_str(limit=1000) == text, name
