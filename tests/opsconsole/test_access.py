"""Who may look, tried over HTTP: sign-in, tenant scope on every page and form, CSRF, expiry."""
import time

import pytest
from itsdangerous import TimestampSigner
from sqlalchemy import func, select

from crmsync.db import session_scope
from crmsync.db.models import ConflictRecord, ConflictResolution, SyncJob
from tests.opsconsole.conftest import PASSWORD, csrf_of, signed_in_http


def _pending(db_url, conflict_id):
    with session_scope(db_url) as s:
        return s.get(ConflictRecord, conflict_id).status == "pending"


def test_every_page_wants_sign_in(console):
    import requests
    for path in ("/", "/conflicts", "/audit", "/health", "/conflicts/00000000-0000-0000-0000-000000000000"):
        answer = requests.get(console.url + path, allow_redirects=False)
        assert answer.status_code == 302 and "/login" in answer.headers["Location"], path
    assert requests.get(console.url + "/static/htmx.min.js").status_code == 200


def test_wrong_password_is_refused(console, two_tenants):
    import requests
    http = requests.Session()
    token = csrf_of(http.get(console.url + "/login").text)
    for email, password in ((two_tenants.emails["a"], "wrong password!"), ("nobody@example.org", PASSWORD)):
        answer = http.post(console.url + "/login", data={"email": email, "password": password, "csrf_token": token})
        assert answer.status_code == 401 and "Wrong email or password" in answer.text
    assert http.get(console.url + "/conflicts", allow_redirects=False).status_code == 302


def test_tenant_user_never_sees_or_changes_another_tenants_rows(console, two_tenants, db_url):
    a, b = two_tenants.a, two_tenants.b
    with session_scope(db_url) as s:
        job_a = s.scalar(select(SyncJob.id).where(SyncJob.tenant_id == a.tenant_id).limit(1))
    http = signed_in_http(console, two_tenants.emails["b"])
    queue = http.get(console.url + "/conflicts")
    assert b.conflict_id in queue.text and not any(cid in queue.text for cid in a.conflict_ids)
    # naming tenant A in the filters gives nothing
    assert all(cid not in http.get(console.url + "/conflicts", params={"tenant": a.tenant_id}).text
               for cid in a.conflict_ids)
    token = csrf_of(queue.text)
    target = a.conflict_ids[0]
    assert http.get(f"{console.url}/conflicts/{target}").status_code == 404
    assert http.post(f"{console.url}/conflicts/{target}/preview", data={"csrf_token": token}).status_code == 404
    resolved = http.post(f"{console.url}/conflicts/{target}/resolve",
                         data={"csrf_token": token, "fields": "first_name,phone", "choice.first_name": "local",
                               "choice.phone": "local"})
    assert resolved.status_code == 404
    bulk = http.post(f"{console.url}/conflicts/bulk", data={"csrf_token": token, "take": "local", "ids": target})
    assert "Nothing was resolved" in bulk.text
    rule = http.post(f"{console.url}/rules", data={"csrf_token": token, "config": a.config_id, "entity": "contact",
                                                   "field": "phone", "prefer": "local"})
    assert rule.status_code == 404
    assert http.get(f"{console.url}/jobs/{job_a}").status_code == 404
    assert http.post(f"{console.url}/health/{a.config_id}/replay", data={"csrf_token": token}).status_code == 404
    health = http.get(console.url + "/health").text
    assert b.config_id in health and a.config_id not in health
    assert _pending(db_url, target)
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(ConflictResolution)) == 0
    # the operator sees both tenants
    operator = signed_in_http(console, two_tenants.emails["op"]).get(console.url + "/conflicts").text
    assert b.conflict_id in operator and all(cid in operator for cid in a.conflict_ids)


def test_forms_without_the_csrf_token_are_refused(console, two_tenants, db_url):
    http = signed_in_http(console, two_tenants.emails["a"])
    target = two_tenants.a.conflict_ids[0]
    answer = http.post(f"{console.url}/conflicts/{target}/resolve",
                       data={"fields": "first_name,phone", "choice.first_name": "local", "choice.phone": "local"})
    assert answer.status_code == 400 and "nothing was changed" in answer.text
    forged = http.post(f"{console.url}/conflicts/bulk", data={"csrf_token": "forged", "take": "local", "ids": target})
    assert forged.status_code == 400
    assert _pending(db_url, target)


def _cookie(console_app, payload: dict, signed_at: float) -> str:
    """A session cookie as Flask would have written it at `signed_at`."""
    interface = console_app.session_interface
    serializer = interface.get_signing_serializer(console_app)

    class Then(TimestampSigner):
        def get_timestamp(self):
            return int(signed_at)
    serializer.signer = Then
    return serializer.dumps(payload)


def test_sessions_expire(crmsync_env, two_tenants):
    from crmsync.opsconsole import create_app
    app = create_app()
    with app.test_client() as client:
        client.get("/login")
        with client.session_transaction() as sess:
            token = sess["csrf_token"]
        with session_scope(crmsync_env["CRMSYNC_DATABASE_URL"]) as s:
            from crmsync.db.models import ConsoleUser
            user_id = s.scalar(select(ConsoleUser.id).where(ConsoleUser.email == two_tenants.emails["a"]))
        now = time.time()
        fresh = {"user_id": user_id, "generation": 0, "signed_in_at": now, "csrf_token": token, "_permanent": True}
        client.set_cookie("crmsync_console", _cookie(app, fresh, now))
        assert client.get("/conflicts").status_code == 200
        # idle for longer than CRMSYNC_CONSOLE_SESSION_MINUTES (60): the cookie is no longer accepted
        client.set_cookie("crmsync_console", _cookie(app, fresh, now - 61 * 60))
        assert client.get("/conflicts").status_code == 302
        # active all along, but signed in 13 hours ago: over the 12-hour cap
        client.set_cookie("crmsync_console", _cookie(app, {**fresh, "signed_in_at": now - 13 * 3600}, now))
        assert client.get("/conflicts").status_code == 302


def test_sign_in_never_redirects_off_the_console(console, two_tenants):
    import requests
    # Browsers read "\" as "/" and drop tabs and line breaks: each of these would go to evil.example.
    for target in ("/\\evil.example", "/\\/evil.example", "/\t/evil.example", "//evil.example",
                   "https://evil.example/"):
        http = requests.Session()
        token = csrf_of(http.get(console.url + "/login").text)
        answer = http.post(console.url + "/login", allow_redirects=False,
                           data={"email": two_tenants.emails["a"], "password": PASSWORD, "csrf_token": token,
                                 "next": target})
        assert answer.status_code == 302, target
        assert answer.headers["Location"].endswith("/conflicts"), (target, answer.headers["Location"])
    http = requests.Session()
    token = csrf_of(http.get(console.url + "/login").text)
    kept = http.post(console.url + "/login", allow_redirects=False,
                     data={"email": two_tenants.emails["a"], "password": PASSWORD, "csrf_token": token,
                           "next": "/audit?x=1"})
    assert kept.headers["Location"].endswith("/audit?x=1")


def test_a_field_rule_for_a_field_name_no_column_holds_is_refused(console, two_tenants, db_url):
    from crmsync.db.models import ConflictFieldRule
    http = signed_in_http(console, two_tenants.emails["a"])
    token = csrf_of(http.get(console.url + "/conflicts").text)
    for field in ("custom_fields." + "x" * 300, "custom_fields.a\x00b", "custom_fields."):
        answer = http.post(f"{console.url}/rules", data={"csrf_token": token, "config": two_tenants.a.config_id,
                                                         "entity": "contact", "field": field, "prefer": "local"})
        assert answer.status_code == 200 and "No rule saved" in answer.text, field[:40]
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(ConflictFieldRule)) == 0


def test_signing_out_ends_every_session_of_the_user(console, two_tenants):
    import requests
    email = two_tenants.emails["a"]
    here, elsewhere = signed_in_http(console, email), signed_in_http(console, email)
    copied = requests.Session()
    copied.cookies.update(here.cookies)           # a cookie someone lifted from this browser
    assert copied.get(console.url + "/conflicts", allow_redirects=False).status_code == 200
    token = csrf_of(here.get(console.url + "/conflicts").text)
    assert here.post(console.url + "/logout", data={"csrf_token": token}, allow_redirects=False).status_code == 302
    # The signed cookie itself is still well formed; the generation it names is retired.
    for http in (here, elsewhere, copied):
        answer = http.get(console.url + "/conflicts", allow_redirects=False)
        assert answer.status_code == 302 and "/login" in answer.headers["Location"]
    again = signed_in_http(console, email)
    assert again.get(console.url + "/conflicts", allow_redirects=False).status_code == 200
    # Another user's sessions are not touched.
    other = signed_in_http(console, two_tenants.emails["op"])
    assert other.get(console.url + "/conflicts", allow_redirects=False).status_code == 200


def test_a_forged_cookie_without_a_generation_is_refused(crmsync_env, two_tenants):
    from crmsync.db.models import ConsoleUser
    from crmsync.opsconsole import create_app
    app = create_app()
    with session_scope(crmsync_env["CRMSYNC_DATABASE_URL"]) as s:
        user_id = s.scalar(select(ConsoleUser.id).where(ConsoleUser.email == two_tenants.emails["a"]))
    now = time.time()
    with app.test_client() as client:
        # Signed with the right key (as a cookie from before sign-out generations existed), no generation.
        client.set_cookie("crmsync_console", _cookie(app, {"user_id": user_id, "signed_in_at": now,
                                                           "_permanent": True}, now))
        assert client.get("/conflicts").status_code == 302


def test_the_session_cookie_is_https_only_when_configured(monkeypatch, crmsync_env, two_tenants):
    from crmsync import settings
    from crmsync.opsconsole import create_app

    def session_cookie(app) -> str:
        with app.test_client() as client:
            token = csrf_of(client.get("/login").get_data(as_text=True))
            answer = client.post("/login", data={"email": two_tenants.emails["a"], "password": PASSWORD,
                                                 "csrf_token": token})
            return next(h for h in answer.headers.getlist("Set-Cookie") if h.startswith("crmsync_console="))

    assert "Secure" not in session_cookie(create_app())
    monkeypatch.setenv("CRMSYNC_CONSOLE_SECURE_COOKIES", "true")
    settings.get_settings.cache_clear()
    assert "; Secure" in session_cookie(create_app())
    monkeypatch.setenv("CRMSYNC_CONSOLE_SECURE_COOKIES", "sometimes")
    settings.get_settings.cache_clear()
    try:
        with pytest.raises(settings.SettingsError, match="CRMSYNC_CONSOLE_SECURE_COOKIES"):
            settings.get_settings()
    finally:
        settings.get_settings.cache_clear()


def test_the_queue_filters_on_a_salesforce_custom_field(console, two_tenants):
    http = signed_in_http(console, two_tenants.emails["op"])
    assert http.get(console.url + "/conflicts", params={"field": "custom_fields.Tier__c"}).status_code == 200
    assert http.get(console.url + "/conflicts", params={"field": "custom_fields.a;b"}).status_code == 400


def test_a_bulk_resolve_naming_a_huge_bad_id_keeps_the_session(console, two_tenants, db_url):
    # The error goes back as a flash in the session cookie; echoed whole, the cookie would outgrow
    # what a browser keeps and the browser would drop the session.
    http = signed_in_http(console, two_tenants.emails["a"])
    token = csrf_of(http.get(console.url + "/conflicts").text)
    answer = http.post(console.url + "/conflicts/bulk", data={"csrf_token": token, "take": "remote",
                                                              "ids": ["x" * 6000]})
    assert answer.status_code == 200 and "Nothing was resolved" in answer.text
    assert "x" * 400 not in answer.text
    assert all(len(c.value or "") < 4000 for c in http.cookies)
    assert http.get(console.url + "/conflicts", allow_redirects=False).status_code == 200
    assert all(_pending(db_url, cid) for cid in two_tenants.a.conflict_ids)
