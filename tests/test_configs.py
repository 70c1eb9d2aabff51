"""Tenant binding of configs, as an operator meets it on the command line: a config uses only its
own tenant's vault entries, its CRM account is the one its token opens, and one CRM account
belongs to one tenant."""
import json
import uuid
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from crmsync.cli import main
from crmsync.db.models import Tenant
from crmsync.sandbox.hubspot import create_app
from crmsync.sandbox.server import SandboxServer


def cli(*args, stdin=None):
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


def ok(*args, stdin=None):
    result = cli(*args, "--json", stdin=stdin)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def second_portal():
    """Another HubSpot account (its own portal id and token): tenant B's CRM."""
    app = create_app(portal_id=7_770_001, token="pat-na1-portal-b", rate_limit=0, search_rate_limit=0, daily_limit=0)
    server = SandboxServer(app)
    base_url = server.start()
    yield SimpleNamespace(app=app, base_url=base_url, token="pat-na1-portal-b", portal_id="7770001")
    server.stop()


@pytest.fixture
def two_tenants(crmsync_env, hubspot_sandbox, second_portal):
    """Tenants A and B, each with a HubSpot token and a webhook secret of its own."""
    hubspot_sandbox.configure(rate_limit=0, search_rate_limit=0, daily_limit=0)
    out = {}
    for name, token in (("a", hubspot_sandbox.token), ("b", second_portal.token)):
        tenant = ok("tenants", "create", "--name", name)["id"]
        creds = ok("credentials", "set", "--name", f"{name}-hs", "--platform", "hubspot", "--tenant", tenant,
                   "--stdin", stdin=token)
        hook = ok("credentials", "set", "--name", f"{name}-hook", "--platform", "webhook", "--tenant", tenant,
                  "--stdin", stdin=f"{name}-webhook-secret")
        out[name] = SimpleNamespace(tenant=tenant, creds=creds["id"], hook=hook["id"])
    out["a"].crm, out["b"].crm = hubspot_sandbox, second_portal
    return out


def create(who, creds=None, hook=None, *extra):
    return cli("configs", "create", "--tenant", who.tenant, "--platform", "hubspot", "--credentials",
               creds or who.creds, "--base-url", who.crm.base_url, *(["--webhook-secret", hook] if hook else []),
               *extra, "--json")


@pytest.mark.parametrize("attacker,victim", [("b", "a"), ("a", "b")])
@pytest.mark.parametrize("entry", ["creds", "hook"])
def test_a_config_cannot_use_another_tenants_vault_entry(two_tenants, attacker, victim, entry):
    me, them = two_tenants[attacker], two_tenants[victim]
    stolen = getattr(them, entry)
    result = create(me, *((stolen, None) if entry == "creds" else (None, stolen)))
    assert result.exit_code == 2, result.output
    assert f"has no vault entry {stolen}" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert ok("configs", "list") == []
    # The same entries are fine for their own tenant.
    assert ok("configs", "create", "--tenant", them.tenant, "--platform", "hubspot", "--credentials", them.creds,
              "--webhook-secret", them.hook, "--base-url", them.crm.base_url)["tenant_id"] == them.tenant


def test_an_entry_stored_without_a_tenant_belongs_to_its_first_config(two_tenants):
    a, b = two_tenants["a"], two_tenants["b"]
    loose = ok("credentials", "set", "--name", "loose", "--platform", "hubspot", "--stdin", stdin=b.crm.token)
    assert loose["tenant_id"] is None
    assert create(b, loose["id"]).exit_code == 0
    assert create(a, loose["id"]).exit_code == 2      # now B's


def test_the_account_id_is_the_one_the_token_opens(two_tenants):
    a = two_tenants["a"]
    result = create(a, None, None, "--account-id", "5555")
    assert result.exit_code == 2 and "account_id" in result.stderr
    assert f"account {a.crm.app.options.portal_id}, not 5555" in result.stderr
    config = json.loads(create(a).stdout)            # looked up when not given
    assert config["account_id"] == str(a.crm.app.options.portal_id)


def test_one_crm_account_belongs_to_one_tenant(two_tenants):
    a, b = two_tenants["a"], two_tenants["b"]
    assert create(a).exit_code == 0
    # B holds its own token to A's portal (an admin of both, a leaked token): still refused.
    token = ok("credentials", "set", "--name", "b-to-a", "--platform", "hubspot", "--tenant", b.tenant, "--stdin",
               stdin=a.crm.token)
    result = cli("configs", "create", "--tenant", b.tenant, "--platform", "hubspot", "--credentials", token["id"],
                 "--base-url", a.crm.base_url, "--account-id", str(a.crm.app.options.portal_id))
    assert result.exit_code == 2 and "already synced by another tenant's config" in result.stderr
    result = cli("configs", "create", "--tenant", b.tenant, "--platform", "hubspot", "--credentials", token["id"],
                 "--base-url", a.crm.base_url)
    assert result.exit_code == 2 and "another tenant" in result.stderr
    assert [c["tenant_id"] for c in ok("configs", "list")] == [a.tenant]


def test_a_tenant_syncs_one_account_per_crm(two_tenants):
    """Sync links are keyed by (tenant, platform, entity, external id): a second HubSpot portal in
    the same tenant would share them with the first. Its contact 101 would then be merged into the
    local row linked to the first portal's contact 101 (another person), and that row pushed back
    to the first portal. So a second config of the same CRM in one tenant is refused."""
    a, b = two_tenants["a"], two_tenants["b"]
    first = json.loads(create(a).stdout)
    other_portal = ok("credentials", "set", "--name", "a-portal-b", "--platform", "hubspot", "--tenant", a.tenant,
                      "--stdin", stdin=b.crm.token)
    result = cli("configs", "create", "--tenant", a.tenant, "--platform", "hubspot", "--credentials",
                 other_portal["id"], "--base-url", b.crm.base_url)
    assert result.exit_code == 2, result.output
    assert f"already syncs hubspot through config {first['id']}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert [c["id"] for c in ok("configs", "list")] == [first["id"]]
    # The portal's own tenant still may.
    assert create(b).exit_code == 0


def test_an_unreachable_crm_fails_the_create_and_writes_nothing(two_tenants):
    a = two_tenants["a"]
    result = cli("configs", "create", "--tenant", a.tenant, "--platform", "hubspot", "--credentials", a.creds,
                 "--base-url", "http://127.0.0.1:9/", "--account-id", "4242")
    assert result.exit_code == 1 and "could not ask hubspot" in result.stderr
    assert ok("configs", "list") == []


def test_a_refused_token_is_bad_input(two_tenants):
    a = two_tenants["a"]
    wrong = ok("credentials", "set", "--name", "wrong", "--platform", "hubspot", "--tenant", a.tenant, "--stdin",
               stdin="pat-na1-wrong")
    result = create(a, wrong["id"])
    assert result.exit_code == 2 and "refused" in result.stderr and "pat-na1-wrong" not in result.output


def test_replacing_a_token_must_open_the_same_account(two_tenants):
    a, b = two_tenants["a"], two_tenants["b"]
    config = json.loads(create(a).stdout)
    swapped = cli("credentials", "set", "--name", "a-hs", "--platform", "hubspot", "--stdin", "--replace",
                  stdin=b.crm.token)
    # (B's token does not open A's CRM at all; one that opened another account is refused the
    # same way as --account-id 5555 above.)
    assert swapped.exit_code == 2 and "refused" in swapped.stderr, swapped.output
    assert cli("doctor", config["id"]).exit_code == 0     # the config still holds A's token
    same = ok("credentials", "set", "--name", "a-hs", "--platform", "hubspot", "--stdin", "--replace",
              stdin=a.crm.token)
    assert same["used_by"] == [config["id"]] and same["replaced"] is True


def marker_on(crm, object_type):
    return any(p["name"] == "crmsync_id" and p.get("hasUniqueValue")
               for p in crm.api("GET", f"/crm/v3/properties/{object_type}").json()["results"])


def test_a_pushing_config_creates_the_crmsync_id_property_on_its_entities(two_tenants):
    a = two_tenants["a"]
    result = create(a, None, None, "--entities", "contacts,deals,tasks")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["marker_properties"] == {"contacts": "created", "deals": "created"} and out["warnings"] == []
    assert marker_on(a.crm, "contacts") and marker_on(a.crm, "deals")
    assert not marker_on(a.crm, "companies")          # not synced by this config: left alone


def test_a_pull_only_config_adds_nothing_to_the_crm(two_tenants):
    a = two_tenants["a"]
    out = json.loads(create(a, None, None, "--direction", "pull").stdout)
    assert out["marker_properties"] == {} and out["warnings"] == []
    assert not marker_on(a.crm, "contacts")


def test_a_token_without_the_schema_scope_creates_the_config_with_a_warning(two_tenants):
    a = two_tenants["a"]
    a.crm.configure(schema_write=False)
    result = create(a, None, None, "--entities", "contacts,companies")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out["marker_properties"]) == {"contacts", "companies"}
    assert all(v.startswith("refused") and "MISSING_SCOPES" in v for v in out["marker_properties"].values())
    assert len(out["warnings"]) == 2 and "by email, domain or name only" in out["warnings"][0]
    assert [c["id"] for c in ok("configs", "list")] == [out["id"]]
    assert not marker_on(a.crm, "contacts")
    # without --json the warnings go to stderr, one line each
    b = two_tenants["b"]
    b.crm.app.configure(schema_write=False)
    text = cli("configs", "create", "--tenant", b.tenant, "--platform", "hubspot", "--credentials", b.creds,
               "--base-url", b.crm.base_url, "--direction", "push", "--entities", "deals")
    assert text.exit_code == 0 and text.stderr.startswith("warning: marker_properties: deals: refused")
    assert len(text.stderr.strip().splitlines()) == 1


# --- one enabled config per CRM in a tenant, held by the database ------------------------------
def _direct(session, tenant_id, *, platform="hubspot", enabled=True, account_id=None):
    """A config inserted through the ORM, past every check of `crmsync.configs` (as a pair made
    before `configs create` refused it, or a request racing another)."""
    from crmsync.db.models import SyncConfig
    from tests.fixtures.factories import make_secret
    config = SyncConfig(tenant_id=tenant_id, platform=platform, account_id=account_id or uuid.uuid4().hex[:8],
                        enabled=enabled,
                        credentials_vault_id=make_secret(session, platform=platform, tenant_id=tenant_id).id)
    session.add(config)
    session.flush()
    return config.id


def _configs_of(url, tenant_id):
    from sqlalchemy import select

    from crmsync.db import session_scope
    from crmsync.db.models import SyncConfig
    with session_scope(url) as s:
        return {c.id: (c.enabled, c.next_sync_at) for c in s.scalars(
            select(SyncConfig).where(SyncConfig.tenant_id == tenant_id))}


def test_the_database_holds_a_tenant_to_one_enabled_config_per_crm(any_db_url):
    from sqlalchemy.exc import IntegrityError

    from crmsync.configs import _violates_one_enabled_per_crm
    from crmsync.db import session_scope
    from tests.fixtures.factories import make_config, make_tenant
    with session_scope(any_db_url) as s:
        tenant, other_tenant = make_tenant(s).id, make_tenant(s).id
        first = make_config(s, s.get(Tenant, tenant)).id
    with pytest.raises(IntegrityError) as refused, session_scope(any_db_url) as s:
        _direct(s, tenant)
    assert _violates_one_enabled_per_crm(refused.value)
    # Disabled duplicates stay (doctor's way out of a legacy pair), and so do other CRMs and tenants.
    with session_scope(any_db_url) as s:
        disabled = {_direct(s, tenant, enabled=False), _direct(s, tenant, enabled=False)}
        _direct(s, tenant, platform="pipedrive")
        _direct(s, other_tenant)
    assert {cid for cid, (enabled, _) in _configs_of(any_db_url, tenant).items() if not enabled} == disabled
    assert len(_configs_of(any_db_url, tenant)) == 4 and first in _configs_of(any_db_url, tenant)


def test_a_create_that_loses_a_race_is_refused_by_the_index_naming_the_winner(any_db_url, monkeypatch):
    """Two `configs create` at once both pass the Python check; the database refuses the second,
    which gets the check's ConfigError and writes nothing (not even the vault entry's binding)."""
    from crmsync import configs
    from crmsync.db import session_scope
    from crmsync.db.models import VaultSecret
    from tests.fixtures.factories import make_config, make_secret, make_tenant
    with session_scope(any_db_url) as s:
        tenant = make_tenant(s).id
        unbound = make_secret(s).id
    real_check, winner = configs.check_platform_free, []

    def check_then_lose_the_race(session, platform, tenant_id):
        real_check(session, platform, tenant_id)
        monkeypatch.setattr(configs, "check_platform_free", real_check)     # the other request's own check
        with session_scope(any_db_url) as other:
            winner.append(make_config(other, other.get(Tenant, tenant_id)).id)
    monkeypatch.setattr(configs, "check_platform_free", check_then_lose_the_race)
    with pytest.raises(configs.ConfigError) as refused, session_scope(any_db_url) as s:
        configs.create_config(s, {"tenant_id": tenant, "platform": "hubspot", "credentials_vault_id": unbound,
                                  "account_id": "424242"})
    assert str(refused.value) == (f"platform: tenant {tenant} already syncs hubspot through config {winner[0]}; "
                                  "a second hubspot account needs a tenant of its own")
    assert refused.value.field == "platform"
    assert list(_configs_of(any_db_url, tenant)) == winner
    with session_scope(any_db_url) as s:
        assert s.get(VaultSecret, unbound).tenant_id is None


def test_an_enable_that_loses_a_race_is_refused_by_the_index_naming_the_winner(any_db_url, monkeypatch):
    from crmsync import configs
    from crmsync.db import session_scope
    with session_scope(any_db_url) as s:
        tenant = configs.create_tenant(s, "legacy").id
        one, two = _direct(s, tenant, enabled=False), _direct(s, tenant, enabled=False)
    real_check = configs.check_none_enabled

    def check_then_lose_the_race(session, config):
        real_check(session, config)
        monkeypatch.setattr(configs, "check_none_enabled", real_check)
        with session_scope(any_db_url) as other:
            configs.set_enabled(other, one, True)
    monkeypatch.setattr(configs, "check_none_enabled", check_then_lose_the_race)
    with session_scope(any_db_url) as s:
        with pytest.raises(configs.ConfigError, match=f"already syncs hubspot through config {one}; "):
            configs.set_enabled(s, two, True)
        # The savepoint is undone and the session usable: the caller sees the config as it was.
        assert s.get(configs.SyncConfig, two).enabled is False
    state = _configs_of(any_db_url, tenant)
    assert state[one][0] is True and state[two] == (False, None)


def test_enabling_the_second_of_a_legacy_pair_is_refused_naming_the_first(crmsync_env, db_url):
    """A pair made before `configs create` refused it, one disabled as doctor advises: enabling
    the other is refused with what to do, and changes nothing, until the first is disabled."""
    from crmsync.db import session_scope
    from tests.fixtures.factories import make_config, make_tenant
    with session_scope(db_url) as s:
        tenant = make_tenant(s)
        first, tenant = make_config(s, tenant).id, tenant.id
        second = _direct(s, tenant, enabled=False)
    before = _configs_of(db_url, tenant)
    result = cli("configs", "enable", second, "--json")
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"error: platform: tenant {tenant} already syncs hubspot through config {first}; a "
                             f"tenant syncs one account per CRM: `crmsync configs disable {first}` first, or sync "
                             "this config's account from a tenant of its own\n")
    assert result.stdout == "" and _configs_of(db_url, tenant) == before
    assert ok("configs", "enable", first)["enabled"] is True        # enabling the enabled one: as before
    assert ok("configs", "disable", first)["enabled"] is False
    enabled = ok("configs", "enable", second)
    assert enabled["enabled"] is True and enabled["next_sync_at"]
    result = cli("configs", "enable", first)
    assert result.exit_code == 2 and f"through config {second}; " in result.stderr
    assert f"`crmsync configs disable {second}`" in result.stderr


# --- one config per CRM account, held by the database ------------------------------------------
def lose_the_account_race(monkeypatch, url, win):
    """`check_account_free` passes, then the other request `win(session)` commits in a session of
    its own (past its own, real check): two requests at once, both through the Python check."""
    from crmsync import configs
    from crmsync.db import session_scope
    real_check = configs.check_account_free

    def check_then_lose_the_race(*args, **kwargs):
        real_check(*args, **kwargs)
        monkeypatch.setattr(configs, "check_account_free", real_check)
        with session_scope(url) as other:
            win(other)
    monkeypatch.setattr(configs, "check_account_free", check_then_lose_the_race)


def test_the_database_holds_a_crm_account_to_one_config(any_db_url):
    from sqlalchemy.exc import IntegrityError

    from crmsync.configs import ONE_CONFIG_PER_ACCOUNT, _violates, _violates_one_enabled_per_crm
    from crmsync.db import session_scope
    from tests.fixtures.factories import make_tenant
    with session_scope(any_db_url) as s:
        first, second = make_tenant(s).id, make_tenant(s).id
        _direct(s, first, account_id="424242")
    with pytest.raises(IntegrityError) as refused, session_scope(any_db_url) as s:
        _direct(s, second, account_id="424242", enabled=False)
    assert _violates(refused.value, ONE_CONFIG_PER_ACCOUNT) and not _violates_one_enabled_per_crm(refused.value)


def test_a_create_that_loses_the_account_race_is_refused_like_the_check(db_url, monkeypatch):
    """Two tenants create a config of one CRM account at once: the database's unique constraint
    refuses the second, which gets the check's ConfigError and writes nothing (not even the vault
    entry's binding), its session still usable. (PostgreSQL: SQLite has one writer, and the check
    runs after this create has begun writing.)"""
    from crmsync import configs
    from crmsync.db import session_scope
    from crmsync.db.models import VaultSecret
    from tests.fixtures.factories import make_config, make_secret, make_tenant
    with session_scope(db_url) as s:
        first, second = make_tenant(s).id, make_tenant(s).id
        unbound, other_secret = make_secret(s).id, make_secret(s).id
    winner = []
    lose_the_account_race(monkeypatch, db_url, lambda other: winner.append(
        make_config(other, other.get(Tenant, first), account_id="424242").id))
    with session_scope(db_url) as s:
        with pytest.raises(configs.ConfigError) as refused:
            configs.create_config(s, {"tenant_id": second, "platform": "hubspot", "credentials_vault_id": unbound,
                                      "account_id": "424242"})
        assert s.get(VaultSecret, unbound).tenant_id is None
        assert configs.create_config(s, {"tenant_id": second, "platform": "hubspot",
                                         "credentials_vault_id": other_secret, "account_id": "434343"})
    assert str(refused.value) == "account_id: hubspot account 424242 is already synced by another tenant's config"
    assert refused.value.field == "account_id"
    assert list(_configs_of(db_url, first)) == winner and len(_configs_of(db_url, second)) == 1
    with session_scope(db_url) as s:
        assert s.get(VaultSecret, unbound).tenant_id is None


def test_a_connect_that_loses_the_account_race_is_refused_like_the_check(two_tenants, db_url, monkeypatch):
    """B's token opens A's portal; while B's config is being connected (the CRM asked, the account
    checked free), A's config of that portal is committed. Setting B's account_id is refused with
    the check's message, B's config keeps no account, and the session goes on."""
    from crmsync import configs
    from crmsync.db import session_scope
    from tests.fixtures.factories import make_config
    a, b = two_tenants["a"], two_tenants["b"]
    portal = str(a.crm.app.options.portal_id)
    token = ok("credentials", "set", "--name", "b-to-a", "--platform", "hubspot", "--tenant", b.tenant, "--stdin",
               stdin=a.crm.token)["id"]
    with session_scope(db_url) as s:          # a config made before accounts were looked up
        config = configs.SyncConfig(tenant_id=b.tenant, platform="hubspot", credentials_vault_id=token,
                                    api_base_url=a.crm.base_url)
        s.add(config)
        s.flush()
        config = config.id
    winner = []
    lose_the_account_race(monkeypatch, db_url, lambda other: winner.append(
        make_config(other, other.get(Tenant, a.tenant), credentials_vault_id=a.creds, account_id=portal).id))
    with session_scope(db_url) as s:
        with pytest.raises(configs.ConfigError) as refused:
            configs.verify_account(s, configs.get_config(s, config))
        assert configs.get_config(s, config).account_id is None
    assert str(refused.value) == f"account_id: hubspot account {portal} is already synced by another tenant's config"
    assert refused.value.field == "account_id"
    assert {c["id"]: c["account_id"] for c in ok("configs", "list")} == {winner[0]: portal, config: None}


def test_two_configs_create_of_one_account_at_once_refuse_the_second_on_one_line(two_tenants, db_url, monkeypatch):
    """`configs create` without --account-id: the account the token opens is set after the CRM is
    asked, and a create of the same account committed meanwhile refuses it as bad input."""
    from tests.fixtures.factories import make_config
    a, b = two_tenants["a"], two_tenants["b"]
    portal = str(a.crm.app.options.portal_id)
    token = ok("credentials", "set", "--name", "b-to-a", "--platform", "hubspot", "--tenant", b.tenant, "--stdin",
               stdin=a.crm.token)["id"]
    winner = []
    lose_the_account_race(monkeypatch, db_url, lambda other: winner.append(
        make_config(other, other.get(Tenant, a.tenant), credentials_vault_id=a.creds, account_id=portal).id))
    result = cli("configs", "create", "--tenant", b.tenant, "--platform", "hubspot", "--credentials", token,
                 "--base-url", a.crm.base_url)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: account_id: hubspot account {portal} is already synced by another tenant's config\n"
    assert a.crm.token not in result.output
    assert [c["id"] for c in ok("configs", "list")] == winner
