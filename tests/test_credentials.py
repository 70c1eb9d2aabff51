import json
import subprocess

import pytest

from crmsync.credentials import (
    SecretNotFound,
    Vault,
    VaultInputError,
    VaultKeyMismatch,
    VaultKeyMissing,
    check_name,
    secret_from_text,
)
from crmsync.db import session_scope
from crmsync.db.models import VaultSecret
from tests.fixtures.db import TEST_SECRET_KEY
from tests.fixtures.factories import make_config, make_tenant

TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"


def test_round_trip_and_no_plaintext_at_rest(db_url):
    with session_scope(db_url) as s:
        tenant = make_tenant(s).id
        vid = Vault(TEST_SECRET_KEY).store(s, name="hs", platform="hubspot", value={"token": TOKEN},
                                           tenant_id=tenant).id
    with session_scope(db_url) as s:
        assert Vault(TEST_SECRET_KEY).read(s, vid, tenant_id=tenant) == {"token": TOKEN}
        raw = s.get(VaultSecret, vid).ciphertext
    assert TOKEN.encode() not in raw
    dbname = db_url.rsplit("/", 1)[1]
    dump = subprocess.run(["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "--data-only", dbname],
                          capture_output=True, check=True).stdout
    assert TOKEN.encode() not in dump and b"crm_credentials_vault" in dump


def test_wrong_key_fails_clearly(db_url):
    with session_scope(db_url) as s:
        vid = Vault(TEST_SECRET_KEY).store(s, name="hs", platform="hubspot", value={"token": TOKEN}).id
    with session_scope(db_url) as s, pytest.raises(VaultKeyMismatch) as err:
        Vault("another-key-entirely-0000000000").read(s, vid, tenant_id=None)
    assert "CRMSYNC_SECRET_KEY" in str(err.value) and TOKEN not in str(err.value)


def test_missing_key_is_a_clear_error():
    with pytest.raises(VaultKeyMissing, match="CRMSYNC_SECRET_KEY"):
        Vault("")


def test_rotation_keeps_old_secrets_readable(db_url):
    with session_scope(db_url) as s:
        vid = Vault(TEST_SECRET_KEY).store(s, name="hs", platform="hubspot", value={"token": TOKEN}).id
    rotated = Vault("brand-new-key-abcdefghijklmnop," + TEST_SECRET_KEY)
    with session_scope(db_url) as s:
        assert rotated.read(s, vid, tenant_id=None) == {"token": TOKEN}


def test_ciphertext_bound_to_its_row(db_url):
    vault = Vault(TEST_SECRET_KEY)
    with session_scope(db_url) as s:
        a = vault.store(s, name="a", platform="hubspot", value={"token": "A"})
        b = vault.store(s, name="b", platform="hubspot", value={"token": "B"})
        b.ciphertext = a.ciphertext
        bid = b.id
    with session_scope(db_url) as s, pytest.raises(VaultKeyMismatch):
        vault.read(s, bid, tenant_id=None)


def test_secret_from_text_shapes():
    assert secret_from_text("hubspot", " tok \n") == {"token": "tok"}
    assert secret_from_text("webhook", "user:pw") == {"secret": "user:pw"}
    assert secret_from_text("hubspot", '{"refresh_token": "r"}') == {"refresh_token": "r"}


def test_an_entry_opens_only_for_its_tenant(db_url):
    vault = Vault(TEST_SECRET_KEY)
    with session_scope(db_url) as s:
        mine, theirs = make_tenant(s).id, make_tenant(s).id
        vid = vault.store(s, name="hs", platform="hubspot", value={"token": TOKEN}, tenant_id=mine).id
    with session_scope(db_url) as s:
        for other in (theirs, None):
            with pytest.raises(SecretNotFound) as err:
                vault.read(s, vid, tenant_id=other)
            assert TOKEN not in str(err.value)
        with pytest.raises(SecretNotFound):
            vault.replace(s, vid, {"token": "theirs now"}, tenant_id=theirs)
        assert vault.read(s, vid, tenant_id=mine) == {"token": TOKEN}


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "tab\there", "nul\x00"])
def test_bad_names_are_refused(name):
    with pytest.raises(VaultInputError, match="--name"):
        check_name(name)


@pytest.mark.parametrize("text", ["tok\x00en", "tok\r\nX-Evil: 1", "tok\nen", '{"token": "a\\r\\nb"}',
                                  "x" * (5 * 1024 * 1024), "   \n", '{"token": "a\\u0000"}'])
def test_secrets_no_crm_call_could_use_are_refused(text):
    with pytest.raises(VaultInputError):
        secret_from_text("hubspot", text)


def test_a_pem_private_key_keeps_its_line_breaks():
    pem = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----"
    assert secret_from_text("hubspot", json.dumps({"private_key": pem})) == {"private_key": pem}


def test_replacing_an_entry_is_explicit_and_keeps_its_platform_while_in_use(db_url):
    vault = Vault(TEST_SECRET_KEY)
    with session_scope(db_url) as s:
        tenant = make_tenant(s)
        hook = vault.store(s, name="hook", platform="webhook", value={"secret": "old"})
        config = make_config(s, tenant, webhook_secret_vault_id=hook.id)
        ids = (tenant.id, hook.id, config.id)
    with session_scope(db_url) as s:
        with pytest.raises(VaultInputError, match=f"used by configs {ids[2]}.*--replace"):
            vault.store(s, name="hook", platform="webhook", value={"secret": "new"})
        with pytest.raises(VaultInputError, match="--platform"):
            vault.store(s, name="hook", platform="hubspot", value={"token": "t"}, replace=True)
        with pytest.raises(VaultInputError, match="another tenant"):
            vault.store(s, name="hook", platform="webhook", value={"secret": "new"}, tenant_id=make_tenant(s).id,
                        replace=True)
    with session_scope(db_url) as s:
        assert vault.read(s, ids[1], tenant_id=ids[0]) == {"secret": "old"}
        vault.store(s, name="hook", platform="webhook", value={"secret": "new"}, replace=True)
    with session_scope(db_url) as s:
        assert vault.read(s, ids[1], tenant_id=ids[0]) == {"secret": "new"}


def _cli(*args, stdin=None, env=None):
    from click.testing import CliRunner

    from crmsync.cli import main
    return CliRunner().invoke(main, list(args), input=stdin, env=env)


def _entries(db_url):
    from sqlalchemy import func, select
    with session_scope(db_url) as s:
        return s.scalar(select(func.count()).select_from(VaultSecret))


@pytest.mark.parametrize("args,stdin,env", [
    (["--name", "", "--stdin"], "s3cr3t", None),
    (["--name", "  ", "--stdin"], "s3cr3t", None),
    (["--name", "hs", "--stdin"], "s3cr3t\x00en", None),
    (["--name", "hs", "--stdin"], "pat-na1-s3cr3t\r\nX-Injected: 1", None),
    (["--name", "hs", "--from-env", "TOKEN_WITH_CR"], None, {"TOKEN_WITH_CR": "s3cr3t\rmore"}),
    (["--name", "hs", "--stdin"], "s3cr3t" * (1024 * 1024), None),
    (["--name", "hs", "--stdin", "--tenant", "not-a-tenant"], "s3cr3t", None),
])
def test_set_refuses_bad_names_and_secrets_with_exit_2(crmsync_env, db_url, args, stdin, env):
    result = _cli("credentials", "set", "--platform", "hubspot", *args, "--json", stdin=stdin, env=env)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert "s3cr3t" not in result.stderr
    assert _entries(db_url) == 0


def test_set_replaces_only_when_asked_and_names_the_configs_using_the_entry(crmsync_env, db_url):
    first = _cli("credentials", "set", "--name", "hook", "--platform", "webhook", "--stdin", "--json", stdin="s1")
    hook = json.loads(first.stdout)["id"]
    with session_scope(db_url) as s:
        config = make_config(s, make_tenant(s), webhook_secret_vault_id=hook).id
    again = _cli("credentials", "set", "--name", "hook", "--platform", "webhook", "--stdin", stdin="s2")
    assert again.exit_code == 2 and "--replace" in again.stderr and config in again.stderr
    moved = _cli("credentials", "set", "--name", "hook", "--platform", "pipedrive", "--stdin", "--replace", stdin="t")
    assert moved.exit_code == 2 and "--platform" in moved.stderr
    replaced = _cli("credentials", "set", "--name", "hook", "--platform", "webhook", "--stdin", "--replace", stdin="s2")
    assert replaced.exit_code == 0, replaced.output
    assert replaced.stdout.strip() == hook and f"used by configs {config}" in replaced.stderr
    with session_scope(db_url) as s:
        entry = s.get(VaultSecret, hook)
        assert entry.platform == "webhook"
        assert Vault(TEST_SECRET_KEY).read(s, hook, tenant_id=entry.tenant_id) == {"secret": "s2"}
