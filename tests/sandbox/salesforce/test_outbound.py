"""Outbound Messages: SOAP notifications of created and edited records, up to 100 per message,
retried until the listener acknowledges, read here with a real XML parser."""
from __future__ import annotations

import threading
import time

import pytest
from defusedxml import ElementTree

from crmsync.sandbox.server import SandboxServer

NS = {"soap": "http://schemas.xmlsoap.org/soap/envelope/", "om": "http://soap.sforce.com/2005/09/outbound",
      "sf": "urn:sobject.enterprise.soap.sforce.com"}
ACK = (b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
       b'envelope/"><soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
       b"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>")


class Listener:
    """Answers the first `refuse` messages with 500, then 200 + Ack (or 200 without Ack: `nack`)."""

    def __init__(self, refuse: int = 0, nack: int = 0):
        self.messages: list[dict] = []
        self.refuse, self.nack = refuse, nack
        self._cond = threading.Condition()
        self.server = SandboxServer(self._app)
        self.url = self.server.start() + "/om"

    def _app(self, environ, start_response):
        body = environ["sandbox.body"]
        with self._cond:
            n = len(self.messages)
            status, answer = ("500 Server Error", b"") if n < self.refuse else \
                ("200 OK", b"<ok/>") if n < self.refuse + self.nack else ("200 OK", ACK)
            self.messages.append({"body": body, "ctype": environ.get("CONTENT_TYPE"), "acked": answer == ACK,
                                  "soapaction": environ.get("HTTP_SOAPACTION")})
            self._cond.notify_all()
        start_response(status, [("Content-Type", "text/xml"), ("Content-Length", str(len(answer)))])
        return [answer]

    def wait(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                assert left > 0, f"listener got {len(self.messages)} messages"
                self._cond.wait(left)

    @staticmethod
    def notifications(message) -> list:
        root = ElementTree.fromstring(message["body"])
        return root.findall("soap:Body/om:notifications/om:Notification", NS)


@pytest.fixture
def listener():
    made = []

    def make(**kw):
        made.append(Listener(**kw))
        return made[-1]
    yield make
    for one in made:
        one.server.stop()


def test_edits_arrive_as_soap_notifications_with_the_latest_data(salesforce_sandbox, listener):
    sf, om = salesforce_sandbox, listener()
    sf.configure(outbound={"url": om.url, "objects": ["Contact"], "fields": {"Contact": ["Email", "LastName"]}})
    rid = sf.records("Contact")[0]["Id"]
    sf.edit("Contact", rid, {"LastName": "First"})
    sf.edit("Contact", rid, {"LastName": "Second"})
    sf.api("POST", "/sobjects/Account/", json={"Name": "Not watched"})
    om.wait(lambda m: sum(len(Listener.notifications(x)) for x in m) >= 2)
    message = om.messages[0]
    assert message["ctype"].startswith("text/xml") and message["soapaction"] == '""'
    root = ElementTree.fromstring(message["body"])
    body = root.find("soap:Body/om:notifications", NS)
    assert body.findtext("om:OrganizationId", namespaces=NS) == sf.app.options.org_id
    assert body.findtext("om:ActionId", namespaces=NS).startswith("04k")
    found = [n for m in om.messages for n in Listener.notifications(m)]
    ids = [n.findtext("om:Id", namespaces=NS) for n in found]
    assert len(set(ids)) == len(ids) == 2          # one notification id per change
    for n in found:
        obj = n.find("om:sObject", NS)
        assert obj.findtext("sf:Id", namespaces=NS) == rid
        assert obj.findtext("sf:LastName", namespaces=NS) == "Second"   # read at send time
        assert {child.tag.split("}")[1] for child in obj} == {"Id", "Email", "LastName"}


def test_a_message_holds_at_most_100_notifications(salesforce_sandbox, listener):
    sf, om = salesforce_sandbox, listener()
    sf.configure(outbound={"url": om.url, "objects": ["Contact"]})
    sf.admin("POST", "burst", {"object": "Contact", "count": 100, "changes": {"Department": "A"}})
    sf.admin("POST", "burst", {"object": "Contact", "count": 50, "changes": {"Department": "B"}})
    om.wait(lambda m: sum(len(Listener.notifications(x)) for x in m) >= 150)
    sizes = [len(Listener.notifications(m)) for m in om.messages]
    assert max(sizes) == 100 and sum(sizes) == 150


def test_messages_are_retried_until_acknowledged(salesforce_sandbox, listener):
    sf, om = salesforce_sandbox, listener(refuse=2, nack=1)
    sf.configure(outbound={"url": om.url, "objects": ["Account"], "time_scale": 0.001})
    sf.api("POST", "/sobjects/Account/", json={"Name": "Retry Ltd"})
    om.wait(lambda m: any(x["acked"] for x in m))
    assert [x["acked"] for x in om.messages] == [False, False, False, True]
    first = [n.findtext("om:Id", namespaces=NS) for n in Listener.notifications(om.messages[0])]
    last = [n.findtext("om:Id", namespaces=NS) for n in Listener.notifications(om.messages[-1])]
    assert first == last                            # the same notification, sent again
    assert sf.admin("POST", "outbound/flush", {"timeout": 5})["drained"] is True
    assert sf.admin("GET", "outbound")["counters"]["succeeded"] == 1


def test_deletions_send_nothing(salesforce_sandbox, listener):
    sf, om = salesforce_sandbox, listener()
    sf.configure(outbound={"url": om.url, "objects": ["Account"]})
    sf.delete("Account", sf.records("Account")[0]["Id"])
    assert sf.admin("POST", "outbound/flush", {"timeout": 5})["drained"] is True
    assert om.messages == []
