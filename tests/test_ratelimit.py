"""The rate budget, against real Redis and in-process: the same behaviour from both backends.

Windows are small (10 per 1 s) to keep the suite fast. Grants are checked on the budget's own clock
(``Grant.at``: Redis TIME for the shared backend), which is what the budget promises about.
"""
from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from crmsync.ratelimit import (
    DAILY,
    SEARCH,
    STANDARD,
    DailyQuotaExhausted,
    Demand,
    InvalidLimit,
    Limit,
    Observation,
    RateBudget,
    RateBudgetUnavailable,
    RateLimitWait,
    budget_for_url,
    budget_from_settings,
)

TEN_PER_SECOND = Limit(10, 1.0)


@pytest.fixture(params=["redis", "in_process"])
def budget(request) -> RateBudget:
    if request.param == "redis":
        return RateBudget(request.getfixturevalue("redis_client"), request.getfixturevalue("redis_prefix"))
    return RateBudget(None)


def max_in_any_window(times: list[float], interval: float) -> int:
    """Most grants in any half-open window [t, t + interval)."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - interval:
            start += 1
        best = max(best, end - start + 1)
    return best


def hammer(budget: RateBudget, account: str, limit: Limit, until: float) -> list[float]:
    """Ask as fast as the budget lets us until ``until`` (time.time()); return grant times."""
    grants = []
    while (now := time.time()) < until:
        grant = budget.try_acquire("hubspot", account, STANDARD, limit)
        if grant.granted:
            grants.append(grant.at)
        else:
            time.sleep(min(grant.wait_seconds, max(0.0, until - now)))
    return grants


def hammer_in_threads(budget: RateBudget, accounts: list[str], threads_each: int, seconds: float):
    until = time.time() + seconds
    results: dict[str, list[float]] = {a: [] for a in accounts}
    lock = threading.Lock()

    def run(account: str) -> None:
        got = hammer(budget, account, TEN_PER_SECOND, until)
        with lock:
            results[account] += got

    workers = [threading.Thread(target=run, args=(a,)) for a in accounts for _ in range(threads_each)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=seconds + 10)
    return results


def assert_full_and_never_over(grants: list[float], windows: int) -> None:
    # never more than the capacity in any window of the nominal interval...
    assert max_in_any_window(grants, 1.0) <= 10
    # ...and every window used: `windows` bursts of 10, each as soon as the last one left the window
    assert len(grants) >= 10 * windows
    first_of_last_window = sorted(grants)[10 * (windows - 1)]
    assert first_of_last_window - min(grants) <= (windows - 1) * 1.0 / 0.95, "used less than 95 % of the rate"


# ------------------------------------------------------------------------------------------ basics


def test_grants_up_to_capacity_then_says_how_long_to_wait(budget):
    grants = [budget.try_acquire("hubspot", "101", STANDARD, TEN_PER_SECOND) for _ in range(11)]

    assert all(g.granted for g in grants[:10])
    refused = grants[10]
    assert not refused.granted and not refused.daily_exhausted
    assert refused.limited_by == STANDARD
    # the first grant leaves the 1 s window (plus 2 % margin) one window after it was made
    assert refused.wait_seconds == pytest.approx(grants[0].at + 1.02 - refused.at, abs=0.002)
    assert refused.resume_at == pytest.approx(datetime.fromtimestamp(refused.at + refused.wait_seconds, UTC),
                                              abs=timedelta(milliseconds=2))
    assert budget.remaining("hubspot", "101", STANDARD, TEN_PER_SECOND) == 0


def test_two_accounts_and_two_kinds_have_independent_budgets(budget):
    for _ in range(10):
        assert budget.try_acquire("hubspot", "201", STANDARD, TEN_PER_SECOND).granted
    assert not budget.try_acquire("hubspot", "201", STANDARD, TEN_PER_SECOND).granted

    assert budget.remaining("hubspot", "202", STANDARD, TEN_PER_SECOND) == 10
    assert budget.remaining("pipedrive", "201", STANDARD, TEN_PER_SECOND) == 10
    assert budget.try_acquire("hubspot", "201", SEARCH, Limit(5, 1.0)).granted


def test_threads_never_exceed_the_window_and_use_all_of_it(budget):
    grants = hammer_in_threads(budget, ["301"], threads_each=8, seconds=1.3)["301"]
    assert_full_and_never_over(grants, windows=2)


def test_two_accounts_hammered_together_each_get_their_own_full_budget(budget):
    results = hammer_in_threads(budget, ["401", "402"], threads_each=4, seconds=1.3)
    for grants in results.values():
        assert_full_and_never_over(grants, windows=2)


def _process_hammer(redis_url, prefix, account, seconds, ready, go, out) -> None:
    budget = budget_for_url(redis_url, key_prefix=prefix)
    budget.remaining("hubspot", account, STANDARD, TEN_PER_SECOND)  # connect and load the script first
    ready.put(1)
    go.wait(30)
    out.put(hammer(budget, account, TEN_PER_SECOND, time.time() + seconds))


def test_four_processes_never_exceed_the_window_and_use_all_of_it(redis_url, redis_prefix):
    ctx = multiprocessing.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_process_hammer, args=(redis_url, redis_prefix, "501", 1.3, ready, go, out))
             for _ in range(4)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=30)
        go.set()
        grants = [t for _ in procs for t in out.get(timeout=30)]
    finally:
        for p in procs:
            p.join(timeout=10)
    assert all(p.exitcode == 0 for p in procs)
    assert_full_and_never_over(grants, windows=2)


# ----------------------------------------------------------------------------------------- blocking


def test_acquire_sleeps_out_a_short_wait(budget):
    limit = Limit(2, 0.5)
    first = budget.acquire("hubspot", "601", STANDARD, limit)
    budget.acquire("hubspot", "601", STANDARD, limit)

    third = budget.acquire("hubspot", "601", STANDARD, limit, max_wait=2)

    assert third.granted and third.at >= first.at + limit.span


def test_acquire_refuses_at_once_when_the_wait_is_longer_than_allowed(budget):
    limit = Limit(1, 10.0)
    budget.acquire("hubspot", "602", STANDARD, limit)
    started = time.monotonic()

    with pytest.raises(RateLimitWait) as caught:
        budget.acquire("hubspot", "602", STANDARD, limit, max_wait=0.5)

    assert time.monotonic() - started < 0.3
    assert caught.value.wait_seconds > 9 and caught.value.kind == STANDARD
    assert not isinstance(caught.value, DailyQuotaExhausted)


def test_a_completed_call_counts_from_its_response(budget):
    limit = Limit(1, 0.5)
    grant = budget.try_acquire("hubspot", "603", STANDARD, limit)
    time.sleep(0.2)  # the call is in flight

    budget.observe("hubspot", "603", {}, grant=grant)

    refused = budget.try_acquire("hubspot", "603", STANDARD, limit)
    assert refused.resume_at.timestamp() >= grant.at + 0.2 + limit.span
    assert refused.wait_seconds == pytest.approx(limit.span, abs=0.05)


def test_a_call_completed_after_its_window_still_holds_its_slot(budget):
    limit = Limit(1, 0.2)
    grant = budget.try_acquire("hubspot", "604", STANDARD, limit)
    deadline = time.monotonic() + 2
    while budget.remaining("hubspot", "604", STANDARD, limit) == 0:  # the slow call left the window
        assert time.monotonic() < deadline
        time.sleep(0.01)

    budget.complete(grant)

    assert not budget.try_acquire("hubspot", "604", STANDARD, limit).granted


# ---------------------------------------------------------------------------------------- daily quota


def next_midnight(zone: str) -> datetime:
    local = datetime.now(ZoneInfo(zone))
    return datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), ZoneInfo(zone))


def test_spent_daily_quota_answers_resume_at_the_reset(budget):
    daily = Limit.daily(3)
    assert all(budget.try_acquire("pipedrive", "701", DAILY, daily).granted for _ in range(3))

    refused = budget.try_acquire("pipedrive", "701", DAILY, daily)

    assert not refused.granted and refused.daily_exhausted and refused.limited_by == DAILY
    assert refused.resume_at == pytest.approx(next_midnight("UTC"), abs=timedelta(milliseconds=5))
    started = time.monotonic()
    with pytest.raises(DailyQuotaExhausted) as caught:
        budget.acquire("pipedrive", "701", DAILY, daily, max_wait=60)
    assert time.monotonic() - started < 0.3
    assert caught.value.resume_at == refused.resume_at


def test_daily_quota_resets_at_midnight_of_its_time_zone(budget):
    daily = Limit.daily(1, timezone="Asia/Kolkata")
    budget.try_acquire("hubspot", "702", DAILY, daily)

    refused = budget.try_acquire("hubspot", "702", DAILY, daily)

    assert refused.resume_at == pytest.approx(next_midnight("Asia/Kolkata"), abs=timedelta(milliseconds=5))


def test_several_buckets_are_taken_all_or_nothing(budget):
    # a Pipedrive list page: one request from the 2 s burst, 10 tokens from the day's budget
    page = [Demand(STANDARD, TEN_PER_SECOND, 1), Demand(DAILY, Limit.daily(25), 10)]
    assert budget.try_acquire_many("pipedrive", "801", page).granted
    assert budget.try_acquire_many("pipedrive", "801", page).granted

    refused = budget.try_acquire_many("pipedrive", "801", page)

    assert refused.daily_exhausted and refused.limited_by == DAILY
    assert budget.remaining("pipedrive", "801", STANDARD, TEN_PER_SECOND) == 8  # the refusal took nothing
    assert budget.try_acquire("pipedrive", "801", DAILY, Limit.daily(25), cost=5).granted


# ------------------------------------------------------------------------------- learning from headers


def test_observe_lowers_remaining_when_the_server_says_less_is_left(budget):
    budget.try_acquire("hubspot", "901", STANDARD, TEN_PER_SECOND)

    lowered = budget.observe("hubspot", "901", {STANDARD: Observation(remaining=3, maximum=10)})

    assert lowered == [STANDARD]
    assert budget.remaining("hubspot", "901", STANDARD, TEN_PER_SECOND) == 3
    assert [budget.try_acquire("hubspot", "901", STANDARD, TEN_PER_SECOND).granted for _ in range(4)] == [
        True, True, True, False]


def test_observe_never_raises_the_budget(budget):
    for _ in range(6):
        budget.try_acquire("hubspot", "902", STANDARD, TEN_PER_SECOND)

    assert budget.observe("hubspot", "902", {STANDARD: Observation(remaining=9)}) == []
    assert budget.remaining("hubspot", "902", STANDARD, TEN_PER_SECOND) == 4


def test_observe_learns_a_lower_capacity(budget):
    budget.try_acquire("hubspot", "903", STANDARD, TEN_PER_SECOND)

    budget.observe("hubspot", "903", {STANDARD: Observation(maximum=4)})

    assert budget.remaining("hubspot", "903", STANDARD, TEN_PER_SECOND) == 3


def test_observe_frees_the_slots_when_the_pipedrive_window_resets(budget):
    budget.try_acquire("pipedrive", "904", STANDARD, TEN_PER_SECOND)

    budget.observe("pipedrive", "904", {STANDARD: Observation(remaining=0, maximum=10, reset_in=0.4)})

    refused = budget.try_acquire("pipedrive", "904", STANDARD, TEN_PER_SECOND)
    assert not refused.granted and 0.3 < refused.wait_seconds <= 0.401


def test_observe_daily_remaining_zero_spends_the_daily_quota(budget):
    daily = Limit.daily(250_000)
    budget.try_acquire("hubspot", "905", DAILY, daily)

    budget.observe("hubspot", "905", {DAILY: Observation(remaining=0, maximum=250_000)})

    for kind, limit in ((DAILY, daily), (STANDARD, TEN_PER_SECOND)):
        refused = budget.try_acquire("hubspot", "905", kind, limit)
        assert refused.daily_exhausted
        assert refused.resume_at == pytest.approx(next_midnight("UTC"), abs=timedelta(milliseconds=5))


def test_observe_ignores_buckets_it_never_saw_and_empty_readings(budget):
    assert budget.observe("hubspot", "906", {STANDARD: Observation(remaining=0)}) == []
    budget.try_acquire("hubspot", "906", STANDARD, TEN_PER_SECOND)
    assert budget.observe("hubspot", "906", {STANDARD: Observation()}) == []
    assert budget.remaining("hubspot", "906", STANDARD, TEN_PER_SECOND) == 9


# ------------------------------------------------------------------------------------------ penalties


def test_penalty_stops_every_thread_until_retry_after(budget):
    budget.try_acquire("hubspot", "1001", STANDARD, TEN_PER_SECOND)
    until = budget.penalize("hubspot", "1001", 0.5)
    grants: list = []

    def call() -> None:
        grants.append(budget.acquire("hubspot", "1001", STANDARD, TEN_PER_SECOND, max_wait=3))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)

    assert len(grants) == 4
    assert all(g.at >= until.timestamp() for g in grants)
    refused_other = budget.try_acquire("hubspot", "1002", STANDARD, TEN_PER_SECOND)
    assert refused_other.granted  # only that account waits


def _process_after_penalty(redis_url, prefix, ready, go, out) -> None:
    budget = budget_for_url(redis_url, key_prefix=prefix)
    budget.remaining("hubspot", "1003", STANDARD, TEN_PER_SECOND)
    ready.put(1)
    go.wait(30)
    first = budget.try_acquire("hubspot", "1003", STANDARD, TEN_PER_SECOND)
    later = budget.acquire("hubspot", "1003", STANDARD, TEN_PER_SECOND, max_wait=5)
    out.put((first.granted, first.wait_seconds, later.at))


def test_penalty_stops_every_process_until_retry_after(redis_url, redis_prefix):
    ctx = multiprocessing.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_process_after_penalty, args=(redis_url, redis_prefix, ready, go, out))
             for _ in range(3)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=30)
        until = budget_for_url(redis_url, key_prefix=redis_prefix).penalize("hubspot", "1003", 0.6)
        go.set()
        answers = [out.get(timeout=30) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)

    for first_granted, first_wait, later_at in answers:
        assert not first_granted and 0 < first_wait <= 0.6
        assert later_at >= until.timestamp()


def test_penalty_without_retry_after_waits_out_the_window(budget):
    budget.try_acquire("hubspot", "1004", STANDARD, TEN_PER_SECOND)

    until = budget.penalize("hubspot", "1004")

    refused = budget.try_acquire("hubspot", "1004", STANDARD, TEN_PER_SECOND)
    assert refused.resume_at == pytest.approx(until, abs=timedelta(milliseconds=2))
    assert 0.95 < refused.wait_seconds <= 1.02


def test_daily_penalty_stops_every_kind_of_call_of_the_account(budget):
    budget.try_acquire("hubspot", "1005", DAILY, Limit.daily(1000))

    until = budget.penalize("hubspot", "1005", kind=DAILY)

    assert until == pytest.approx(next_midnight("UTC"), abs=timedelta(milliseconds=5))
    for kind, limit in ((STANDARD, TEN_PER_SECOND), (SEARCH, Limit(5, 1.0)), (DAILY, Limit.daily(1000))):
        refused = budget.try_acquire("hubspot", "1005", kind, limit)
        assert refused.daily_exhausted and refused.resume_at == until
    assert budget.try_acquire("hubspot", "1006", STANDARD, TEN_PER_SECOND).granted


def test_a_daily_penalty_with_a_wait_holds_for_that_wait(budget):
    until = budget.penalize("pipedrive", "1007", 3939, kind=DAILY)

    refused = budget.try_acquire("pipedrive", "1007", STANDARD, TEN_PER_SECOND)
    assert refused.daily_exhausted and refused.resume_at == until
    assert refused.wait_seconds == pytest.approx(3939, abs=0.1)


def test_penalty_on_a_bucket_not_yet_used_still_holds(budget):
    budget.penalize("hubspot", "1008", 5, kind=SEARCH)

    refused = budget.try_acquire("hubspot", "1008", SEARCH, Limit(5, 1.0))

    assert not refused.granted and refused.limited_by == SEARCH and 4.9 < refused.wait_seconds <= 5


# ------------------------------------------------------------------------------------ configuration


@pytest.mark.parametrize("make", [
    lambda: Limit(0, 1.0), lambda: Limit(10, 0), lambda: Limit(20_000, 1.0), lambda: Limit(1, 1, timezone="Mars/Base"),
])
def test_impossible_limits_are_refused(make):
    with pytest.raises(InvalidLimit):
        make()


def test_impossible_calls_are_refused(budget):
    with pytest.raises(InvalidLimit):
        budget.try_acquire("hubspot", "1101", STANDARD, TEN_PER_SECOND, cost=11)
    with pytest.raises(InvalidLimit):
        budget.try_acquire("hubspot", "11:01", STANDARD, TEN_PER_SECOND)
    with pytest.raises(InvalidLimit):
        budget.penalize("hubspot", "1101", -1)


def test_budgets_from_the_same_url_share_one_budget(redis_url, redis_prefix):
    first, second = budget_for_url(redis_url, redis_prefix), budget_for_url(redis_url, redis_prefix)
    for _ in range(10):
        assert first.try_acquire("hubspot", "1201", STANDARD, TEN_PER_SECOND).granted
    assert not second.try_acquire("hubspot", "1201", STANDARD, TEN_PER_SECOND).granted


def test_settings_choose_the_backend(redis_url):
    assert budget_from_settings(SimpleNamespace(redis_url=redis_url)).shared
    assert not budget_from_settings(SimpleNamespace(redis_url=None)).shared


def test_unreachable_redis_is_a_typed_error_not_a_free_pass():
    budget = budget_for_url("redis://127.0.0.1:1/0")
    with pytest.raises(RateBudgetUnavailable):
        budget.try_acquire("hubspot", "1301", STANDARD, TEN_PER_SECOND)


def test_levels_say_what_each_used_bucket_has_left_without_taking_any(budget):
    assert budget.levels("hubspot", "lv") == {}                  # never used: no limit known, nothing said
    for _ in range(3):
        assert budget.try_acquire_many("hubspot", "lv", [Demand(STANDARD, Limit(10, 1.0)),
                                                          Demand(DAILY, Limit.daily(100))]).granted
    assert budget.levels("hubspot", "lv") == {STANDARD: (7, 10), DAILY: (97, 100)}
    assert budget.levels("hubspot", "lv") == {STANDARD: (7, 10), DAILY: (97, 100)}   # a look takes nothing
    budget.penalize("hubspot", "lv", kind=DAILY)
    assert budget.levels("hubspot", "lv") == {STANDARD: (0, 10), DAILY: (0, 100)}    # the day is over for all
