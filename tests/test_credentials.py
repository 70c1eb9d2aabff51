import subprocess

import pytest

from crmsync.credentials import Vault, VaultKeyMismatch, VaultKeyMissing, secret_from_text
from crmsync.db import session_scope
from crmsync.db.models import VaultSecret
from tests.fixtures.db import TEST_SECRET_KEY

TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"


def test_round_trip_and_no_plaintext_at_rest(db_url):
    with session_scope(db_url) as s:
        vid = Vault(TEST_SECRET_KEY).store(s, name="hs", platform="hubspot", value={"token": TOKEN}).id
    with session_scope(db_url) as s:
        assert Vault(TEST_SECRET_KEY).read(s, vid) == {"token": TOKEN}
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
        Vault("another-key-entirely-0000000000").read(s, vid)
    assert "CRMSYNC_SECRET_KEY" in str(err.value) and TOKEN not in str(err.value)


def test_missing_key_is_a_clear_error():
    with pytest.raises(VaultKeyMissing, match="CRMSYNC_SECRET_KEY"):
        Vault("")


def test_rotation_keeps_old_secrets_readable(db_url):
    with session_scope(db_url) as s:
        vid = Vault(TEST_SECRET_KEY).store(s, name="hs", platform="hubspot", value={"token": TOKEN}).id
    rotated = Vault("brand-new-key-abcdefghijklmnop," + TEST_SECRET_KEY)
    with session_scope(db_url) as s:
        assert rotated.read(s, vid) == {"token": TOKEN}


def test_ciphertext_bound_to_its_row(db_url):
    vault = Vault(TEST_SECRET_KEY)
    with session_scope(db_url) as s:
        a = vault.store(s, name="a", platform="hubspot", value={"token": "A"})
        b = vault.store(s, name="b", platform="hubspot", value={"token": "B"})
        b.ciphertext = a.ciphertext
        bid = b.id
    with session_scope(db_url) as s, pytest.raises(VaultKeyMismatch):
        vault.read(s, bid)


def test_secret_from_text_shapes():
    assert secret_from_text("hubspot", " tok \n") == {"token": "tok"}
    assert secret_from_text("webhook", "user:pw") == {"secret": "user:pw"}
    assert secret_from_text("hubspot", '{"refresh_token": "r"}') == {"refresh_token": "r"}
