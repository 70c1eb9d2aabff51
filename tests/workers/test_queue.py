"""The task table, enqueueing after commit, the inline runner (FIFO, no recursion, retries,
failure hooks) and the retry classification the Celery base task shares."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crmsync.platforms.errors import AuthenticationError, RateLimited
from crmsync.ratelimit import InvalidLimit, RateBudgetUnavailable
from crmsync.sync.errors import DeleteGuardTripped
from crmsync.tasks import enqueue, enqueue_after_commit, names, retry
from crmsync.tasks.errors import UnknownTask
from crmsync.tasks.inline import INLINE_MAX_WAIT_SECONDS, InlineRunner
from crmsync.tasks.names import TASKS, TaskRoute
from crmsync.tasks.retry import MAX_COUNTDOWN_SECONDS, MAX_RETRIES, classify
from tests.workers import targets


@pytest.fixture
def test_task(monkeypatch, crmsync_env):
    """Registers `test.record` (tests/workers/targets.py) for this test only; inline mode."""
    targets.reset()
    monkeypatch.setitem(TASKS, "test.record",
                        TaskRoute("tests.workers.targets:record", names.SYNCS, "tests.workers.targets:on_failure"))
    yield
    targets.reset()


class FakeTime:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def labels():
    return [label for label, _ in targets.CALLS]


def test_task_table_names_and_queues():
    assert set(TASKS) == {
        "crmsync.sync.start_job", "crmsync.sync.run_step", "crmsync.events.split", "crmsync.events.process",
        "crmsync.automation.run", "crmsync.schedule.dispatch_due_syncs", "crmsync.schedule.sweep_outbox"}
    assert {r.queue for r in TASKS.values()} <= set(names.QUEUES)
    assert TASKS["crmsync.events.process"].queue == "events"
    assert TASKS["crmsync.events.split"].queue == "events"
    assert TASKS["crmsync.sync.run_step"].on_failure == "crmsync.sync.jobs:fail_step"
    for r in TASKS.values():
        assert r.target.count(":") == 1


def test_unknown_task_is_refused(crmsync_env):
    with pytest.raises(UnknownTask, match="nope"):
        enqueue("crmsync.nope", "1")


def test_inline_runs_fifo_without_recursion(test_task):
    targets.PLAN.update({"A": ["B", "C"], "B": ["D", "E"], "C": ["F"]})
    enqueue("test.record", "A")
    assert labels() == ["A", "B", "C", "D", "E", "F"]
    depths = {depth for _, depth in targets.CALLS}
    assert len(depths) == 1, f"successors ran deeper in the stack: {targets.CALLS}"


def test_long_chain_does_not_grow_the_stack(test_task):
    targets.PLAN.update({str(i): [str(i + 1)] for i in range(300)})
    enqueue("test.record", "0")
    assert len(targets.CALLS) == 301
    assert len({depth for _, depth in targets.CALLS}) == 1


def test_inline_retries_transient_errors_with_backoff():
    targets.reset()
    fake = FakeTime()
    runner = InlineRunner(sleep=fake.sleep, clock=fake.clock)
    targets.FAILURES["X"] = [targets.transient(), targets.transient()]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(TASKS, "test.record", TaskRoute("tests.workers.targets:record", names.SYNCS,
                                                   "tests.workers.targets:on_failure"))
        mp.setenv("CRMSYNC_DATABASE_URL", "sqlite://")
        from crmsync.settings import get_settings
        get_settings.cache_clear()
        runner.submit("test.record", ("X",))
    assert labels() == ["X", "X", "X"]
    assert targets.FAILED == []
    # full jitter: each wait within [0, base * 2**attempt]
    assert len(fake.sleeps) <= 2
    assert all(0 <= s <= retry.BACKOFF_BASE_SECONDS * 2 ** i for i, s in enumerate(fake.sleeps))


def test_inline_gives_up_after_max_retries_and_calls_the_failure_hook(test_task):
    fake = FakeTime()
    runner = InlineRunner(sleep=fake.sleep, clock=fake.clock)
    targets.FAILURES["X"] = [targets.transient() for _ in range(MAX_RETRIES + 5)]
    runner.submit("test.record", ("X",))
    assert len(targets.CALLS) == MAX_RETRIES + 1
    assert len(targets.FAILED) == 1 and targets.FAILED[0][0] == "X"
    assert "gave up after" in targets.FAILED[0][1] and "502" in targets.FAILED[0][1]


def test_inline_permanent_error_fails_at_once(test_task):
    runner = InlineRunner(sleep=FakeTime().sleep)
    targets.FAILURES["X"] = [targets.invalid()]
    runner.submit("test.record", ("X",))
    assert labels() == ["X"]
    assert targets.FAILED == [("X", "ValidationError: hubspot: email is not valid (HTTP 400)")]


def test_inline_rate_limit_waits_then_runs_and_does_not_use_up_retries(test_task):
    fake = FakeTime()
    runner = InlineRunner(sleep=fake.sleep, clock=fake.clock)
    targets.FAILURES["X"] = [targets.rate_limited(2.0) for _ in range(MAX_RETRIES + 3)]
    targets.PLAN["Y"] = []
    runner.submit("test.record", ("X",))
    assert labels().count("X") == MAX_RETRIES + 4      # rate waits are not failures
    assert targets.FAILED == []
    assert all(2.0 <= s <= 3.3 for s in fake.sleeps)


def test_inline_other_due_work_runs_while_one_task_waits(test_task):
    fake = FakeTime()
    runner = InlineRunner(sleep=fake.sleep, clock=fake.clock)
    targets.FAILURES["slow"] = [targets.rate_limited(5.0)]
    targets.PLAN["start"] = ["slow", "fast"]
    runner.submit("test.record", ("start",))
    assert labels() == ["start", "slow", "fast", "slow"]


def test_inline_countdown_beyond_the_bound_is_not_slept(test_task):
    fake = FakeTime()
    runner = InlineRunner(sleep=fake.sleep, clock=fake.clock)
    runner.submit("test.record", ("later",), countdown=INLINE_MAX_WAIT_SECONDS + 1)
    assert labels() == [] and fake.sleeps == []


def test_enqueue_after_commit_runs_only_after_commit(test_task, db_url):
    from crmsync.db import session_scope
    with session_scope(db_url) as s:
        enqueue_after_commit(s, "test.record", "after")
        s.flush()
        assert labels() == []
    assert labels() == ["after"]


def test_enqueue_after_commit_waits_for_the_outermost_commit_not_a_savepoint(test_task, db_url):
    from crmsync.db import session_scope
    with session_scope(db_url) as s:
        enqueue_after_commit(s, "test.record", "first")
        with s.begin_nested(), s.begin_nested():
            enqueue_after_commit(s, "test.record", "second")
        assert labels() == [], "published at a SAVEPOINT release, before the rows were durable"
    assert labels() == ["first", "second"]


def test_a_savepoint_rollback_drops_only_what_was_enqueued_inside_it(test_task, db_url):
    from crmsync.db import session_scope
    with session_scope(db_url) as s:
        enqueue_after_commit(s, "test.record", "outer")
        with pytest.raises(RuntimeError), s.begin_nested():
            with s.begin_nested():
                enqueue_after_commit(s, "test.record", "inner")
            raise RuntimeError("refused")
        enqueue_after_commit(s, "test.record", "after")
    assert labels() == ["outer", "after"]


def test_enqueue_after_commit_is_dropped_on_rollback(test_task, db_url):
    from crmsync.db import session_scope
    with pytest.raises(RuntimeError), session_scope(db_url) as s:
        enqueue_after_commit(s, "test.record", "never")
        raise RuntimeError("the unit of work failed")
    assert labels() == []
    with session_scope(db_url) as s:  # the same kind of session later is clean
        enqueue_after_commit(s, "test.record", "next")
    assert labels() == ["next"]


def test_classify_rate_limited_uses_retry_after_and_resume_at_capped():
    d = classify(RateLimited("x", retry_after=3.0), 0)
    assert d.action == "retry" and not d.counts and 3.0 <= d.delay <= 4.0
    now = datetime(2026, 1, 1, tzinfo=UTC)
    d = classify(RateLimited("x", retry_after=1.0, resume_at=now + timedelta(hours=5)), 0, now=now)
    assert MAX_COUNTDOWN_SECONDS <= d.delay <= MAX_COUNTDOWN_SECONDS + 1.0


def test_classify_transient_permanent_and_unknown():
    assert classify(targets.transient(), 0).action == "retry"
    assert classify(targets.transient(), MAX_RETRIES).action == "fail"
    assert classify(AuthenticationError("token revoked", platform="pipedrive", status=401), 0).action == "fail"
    assert classify(DeleteGuardTripped("contact", 60, 100, 0.5), 0).action == "fail"
    # a network or database blip: retried a bounded number of times; a bug fails at once
    assert classify(ConnectionResetError(), 3).action == "retry"
    from sqlalchemy.exc import OperationalError
    assert classify(OperationalError("SELECT 1", {}, Exception("server closed the connection")), 0).action == "retry"
    assert classify(AttributeError("module has no attribute"), 0).action == "fail"
    for attempt in range(10):
        assert 0 <= classify(targets.transient(), min(attempt, MAX_RETRIES - 1)).delay <= retry.BACKOFF_CAP_SECONDS


def test_classify_reads_the_error_tree_whoever_raised_it():
    # the rate budget's Redis away is a blip, whichever CRM client it passed through
    assert classify(RateBudgetUnavailable("rate budget store unavailable: ConnectionError"), 0).action == "retry"
    assert classify(InvalidLimit("capacity must be a positive integer"), 0).action == "fail"
    from crmsync.ratelimit import RateLimitWait
    wait = classify(RateLimitWait("hubspot", "1", "standard", 2.5, None), MAX_RETRIES)
    assert wait.action == "retry" and not wait.counts and wait.delay >= 2.5


def test_every_error_of_crmsync_has_exactly_one_consequence():
    """Each concrete error class (no subclasses) is under exactly one root of `crmsync.errors`, so
    `classify` and the engine can tell what to do with it."""
    import importlib
    import pkgutil

    import crmsync
    from crmsync.errors import CrmsyncError, Fatal, Retryable, SkipRecord
    for module in pkgutil.walk_packages(crmsync.__path__, "crmsync."):
        if ".sandbox" in module.name or module.name.endswith(".demo") or ".migrations" in module.name:
            continue
        importlib.import_module(module.name)

    def leaves(cls):
        subs = cls.__subclasses__()
        return [cls] if not subs else [leaf for sub in subs for leaf in leaves(sub)]
    found = leaves(CrmsyncError)
    assert len(found) > 30
    for cls in found:
        roots = [root for root in (Retryable, Fatal, SkipRecord) if issubclass(cls, root)]
        assert len(roots) == 1, f"{cls.__module__}.{cls.__qualname__} is under {roots}"
