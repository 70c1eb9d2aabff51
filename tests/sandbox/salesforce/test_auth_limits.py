"""Sessions, the OAuth token endpoint (refresh token and JWT bearer grants), and the API request
allocation: Sforce-Limit-Info on every response, /limits, 403 REQUEST_LIMIT_EXCEEDED."""
from __future__ import annotations

import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def test_every_response_counts_and_reports_api_usage(salesforce_sandbox):
    sf = salesforce_sandbox
    sf.configure(api_limit=5)
    sf.admin("POST", "usage", {"used": 2})
    usage = [sf.query("SELECT Id FROM Account").headers["Sforce-Limit-Info"] for _ in range(2)]
    assert usage == ["api-usage=3/5", "api-usage=4/5"]
    limits = sf.api("GET", "/limits").json()
    assert limits["DailyApiRequests"] == {"Max": 5, "Remaining": 0}
    spent = sf.query("SELECT Id FROM Account")
    assert spent.status_code == 403
    assert spent.json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert spent.headers["Sforce-Limit-Info"] == "api-usage=5/5" and "Retry-After" not in spent.headers


def test_expired_session_is_invalid_session_id_and_refresh_mints_a_new_one(salesforce_sandbox):
    sf = salesforce_sandbox
    minted = sf.admin("POST", "oauth/tokens")
    ok = sf.http.get(sf.base_url + "/services/data/v62.0/limits",
                     headers={"Authorization": f"Bearer {minted['access_token']}"})
    assert ok.status_code == 200
    sf.admin("POST", "oauth/expire")
    expired = sf.http.get(sf.base_url + "/services/data/v62.0/limits",
                          headers={"Authorization": f"Bearer {minted['access_token']}"})
    assert expired.status_code == 401
    assert expired.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    token = sf.http.post(sf.base_url + "/services/oauth2/token", data={
        "grant_type": "refresh_token", "client_id": minted["client_id"], "client_secret": minted["client_secret"],
        "refresh_token": minted["refresh_token"]}).json()
    assert token["token_type"] == "Bearer" and token["instance_url"] == sf.base_url
    assert token["id"].split("/")[-2] == sf.app.options.org_id and "refresh_token" not in token
    again = sf.http.get(sf.base_url + "/services/oauth2/userinfo",
                        headers={"Authorization": f"Bearer {token['access_token']}"}).json()
    assert again["organization_id"] == sf.app.options.org_id
    wrong = sf.http.post(sf.base_url + "/services/oauth2/token", data={
        "grant_type": "refresh_token", "client_id": minted["client_id"], "refresh_token": "nope"})
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"


def test_jwt_bearer_grant_checks_signature_subject_and_audience(salesforce_sandbox):
    sf = salesforce_sandbox
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    sf.admin("POST", "oauth/jwt", {"client_id": "cid", "public_key": public, "username": "sync@acme.test"})

    def grant(**claims):
        assertion = jwt.encode({"iss": "cid", "sub": "sync@acme.test", "aud": "https://login.salesforce.com",
                                "exp": int(time.time()) + 120, **claims}, key, algorithm="RS256")
        return sf.http.post(sf.base_url + "/services/oauth2/token", data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})

    good = grant()
    assert good.status_code == 200 and "refresh_token" not in good.json()
    assert good.json()["instance_url"] == sf.base_url
    assert grant(sub="someone@else.test").json()["error"] == "invalid_grant"
    assert grant(exp=int(time.time()) - 10).json()["error"] == "invalid_grant"
    assert grant(aud="https://example.com").json()["error"] == "invalid_grant"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"iss": "cid", "sub": "sync@acme.test", "aud": "https://login.salesforce.com",
                         "exp": int(time.time()) + 120}, other, algorithm="RS256")
    r = sf.http.post(sf.base_url + "/services/oauth2/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": forged})
    assert r.json()["error"] == "invalid_grant"


def test_injected_rate_fault_is_the_concurrent_limit_flavour(salesforce_sandbox):
    sf = salesforce_sandbox
    sf.configure(faults={"rate_limit_rate": 1.0})
    r = sf.query("SELECT Id FROM Account")
    assert r.status_code == 403 and r.json()[0]["message"] == "ConcurrentPerOrgLongTxn Limit exceeded."
