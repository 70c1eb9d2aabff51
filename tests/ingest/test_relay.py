"""The ingest app's outbox relay: hand-offs made while it lingers go out as one split message,
other tasks one message per id, and a broker that refuses loses nothing the rows do not keep."""
from __future__ import annotations

from crmsync.ingest.relay import OutboxRelay
from crmsync.tasks.names import RUN_AUTOMATION as AUTOMATION_TASK
from crmsync.tasks.names import SPLIT_DELIVERIES as SPLIT_TASK


def test_hand_offs_while_lingering_go_out_together(ingest_env, ingest_queue):
    relay = OutboxRelay(together=frozenset({SPLIT_TASK}), linger=1.0)
    ingest_queue.flushers.append(relay.flush)
    relay.put(SPLIT_TASK, ["d1"])
    relay.put(SPLIT_TASK, ["d2", "d3"])
    relay.put(AUTOMATION_TASK, ["e1", "e2"])
    assert ingest_queue.tasks() == [(SPLIT_TASK, ["d1", "d2", "d3"]), (AUTOMATION_TASK, ["e1"]),
                                    (AUTOMATION_TASK, ["e2"])]
    relay.put(SPLIT_TASK, [])           # nothing to hand over: no message
    assert relay.flush(5) and len(ingest_queue.tasks()) == 3


def test_a_refused_publish_keeps_the_relay_alive(monkeypatch, ingest_env, ingest_queue, caplog):
    from crmsync import settings
    from crmsync.tasks.producer import reset_producer
    from tests.fixtures.workers import free_port
    monkeypatch.setenv("CRMSYNC_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    settings.get_settings.cache_clear()
    reset_producer()
    relay = OutboxRelay(together=frozenset({SPLIT_TASK}), linger=0.0)
    relay.put(SPLIT_TASK, ["d1"])
    assert relay.flush(30)
    assert "the outbox sweeper will pick them up" in caplog.text
    monkeypatch.setenv("CRMSYNC_BROKER_URL", ingest_env["CRMSYNC_BROKER_URL"])
    settings.get_settings.cache_clear()
    reset_producer()
    relay.put(SPLIT_TASK, ["d2"])       # the same thread, once the broker is back
    assert relay.flush(30)
    assert ingest_queue.tasks() == [(SPLIT_TASK, ["d2"])]
