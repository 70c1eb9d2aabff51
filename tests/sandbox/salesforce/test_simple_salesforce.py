"""A second reading of the API that is not ours: simple-salesforce queries, pages, upserts, runs a
Bulk API 2.0 query and reads limits against the sandbox, served over TLS (simple-salesforce only
builds https URLs) with a certificate from a throwaway CA made by trustme."""
from __future__ import annotations

import ssl

import pytest
import requests
import trustme
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession

from crmsync.sandbox.salesforce import create_app
from crmsync.sandbox.server import SandboxServer


@pytest.fixture
def tls_salesforce(tmp_path, _salesforce_responses_match_docs):
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    app = create_app(query_batch_size=40)
    server = SandboxServer(app, ssl_context=context)
    base_url = server.start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    session = requests.Session()
    session.trust_env = False          # the environment's CA bundle would replace ours
    session.verify = str(ca_file)
    yield app, Salesforce(instance_url=base_url, session_id=app.options.token, version="62.0", session=session)
    session.close()
    server.stop()
    app.close()


def test_simple_salesforce_queries_and_pages(tls_salesforce):
    _app, sf = tls_salesforce
    first = sf.query("SELECT Id, Email FROM Contact ORDER BY Id")
    assert (first["totalSize"], first["done"], len(first["records"])) == (100, False, 40)
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert len(second["records"]) == 40 and not ({r["Id"] for r in first["records"]} &
                                                 {r["Id"] for r in second["records"]})
    everything = sf.query_all("SELECT Id FROM Contact")["records"]
    assert len({r["Id"] for r in everything}) == 100
    victim = everything[0]["Id"]
    sf.Contact.delete(victim)
    deleted = sf.query_all(f"SELECT Id, IsDeleted FROM Contact WHERE Id = '{victim}'", include_deleted=True)
    assert deleted["records"][0]["IsDeleted"] is True


def test_simple_salesforce_upserts_and_reads_by_external_id(tls_salesforce):
    _app, sf = tls_salesforce
    assert sf.Contact.upsert("crmsync_id__c/L-42", {"LastName": "Hopper", "Email": "grace@example.org"}) == 201
    assert sf.Contact.upsert("crmsync_id__c/L-42", {"FirstName": "Grace"}) == 200
    got = sf.Contact.get_by_custom_id("crmsync_id__c", "L-42")
    assert (got["FirstName"], got["LastName"], got["Name"]) == ("Grace", "Hopper", "Grace Hopper")
    desc = sf.Contact.describe()
    assert {"Tier__c", "Interests__c"} <= {f["name"] for f in desc["fields"] if f["custom"]}


def test_simple_salesforce_reads_limits_and_api_usage(tls_salesforce):
    _app, sf = tls_salesforce
    sf.query("SELECT Id FROM Account LIMIT 1")
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] == 100_000
    used = sf.api_usage["api-usage"]
    assert (used.used, used.total) == (100_000 - limits["DailyApiRequests"]["Remaining"], 100_000)


def test_simple_salesforce_bulk2_query_follows_the_locator(tls_salesforce):
    _app, sf = tls_salesforce
    pages = list(sf.bulk2.Contact.query("SELECT Id, LastName FROM Contact", max_records=40))
    assert len(pages) == 3
    rows = [line for page in pages for line in page.strip().splitlines()[1:]]
    assert len(set(rows)) == 100


def test_simple_salesforce_sees_an_expired_session(tls_salesforce):
    app, sf = tls_salesforce
    app.sessions.expire_all()
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Account")
