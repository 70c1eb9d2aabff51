"""The one HTTP request loop of every CRM client: `CRMClient`.

A platform's client (`platforms/<crm>/client.py`) subclasses it, sets `platform`, and fills in
the hooks below; its API methods call `request(...)`. The loop, for each call:

1. takes the call's cost from the account's rate budget (`crmsync.ratelimit`): `demands(call)`
   names the buckets. No room: with `wait` it sleeps up to `max_wait`, else (a Celery task) it
   raises `RateLimited` at once for the task to reschedule. A budget whose Redis is away raises
   `RateBudgetUnavailable`, a `Retryable`: the task is retried, never failed for good.
2. sends the request on one keep-alive `requests.Session` with `auth_headers()`;
3. feeds the answer's rate headers back to the budget (`observations(response, call)`, parsed by
   the platform's `limits.py`), counting the slot from when the CRM answered;
4. on a 401, asks `refresh_auth(response)` once (OAuth) and tries again;
5. turns any other non-2xx answer into a typed error with `error_for(response, call)` (the
   platform's `errors.py`), and on a 429 penalizes the whole account so every worker waits;
6. retries what may be retried: a rate-limit wait within `max_wait` (with `wait`), and a 5xx,
   timeout or dropped connection for calls that are safe to repeat (`Call.safe`: not a create,
   whose outcome is then unknown and left to `Adapter.find_existing`), up to `max_attempts`.

Hooks (override in the platform's client):

    platform              the budget's and the errors' platform name ("hubspot")
    budget_account        the budget key of the CRM account (before it is known: a credential hash)
    auth_headers()        headers that authenticate one request
    refresh_auth(resp)    after a 401: refresh the credentials, True to try again (default: no)
    error_for(resp, call) the typed `PlatformError` of a non-2xx answer
    observations(resp, call)  {bucket kind: `Observation`} of the answer's rate headers
    demands(call)         the buckets one call draws from (default: its kind, 1; daily, its cost)
    decode(resp, call)    the value of a 2xx answer (default: its JSON, {} when empty)
    url_for(call)         where the call goes (default: `base_url` + its path)

`_exchange` is the one place a request goes out and its answer (or transport error) comes back:
count requests, 429s and latency there.
"""
from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus

import orjson
import requests

from crmsync import metrics
from crmsync.platforms.base import http_session
from crmsync.platforms.errors import PlatformError, RateLimited, TransientError
from crmsync.ratelimit import DAILY, STANDARD, Demand, Grant, Limit, Observation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Call:
    """One API call as the loop sees it."""
    method: str
    path: str
    kind: str = STANDARD          # the budget bucket of its burst window ("standard", "search", ...)
    cost: int = 1                 # what it takes from the daily quota
    safe: bool = True             # may a 5xx or timeout be retried (False for creates)
    entity: str | None = None
    external_id: str | None = None

    @property
    def where(self) -> str:
        # never the query string: a legacy token may sit there
        return f"{self.method} {self.path.split('?', 1)[0]}"


class CRMClient:
    platform: ClassVar[str] = ""
    default_max_attempts: ClassVar[int] = 3

    def __init__(self, base_url: str, *, budget: Any = None, wait: bool = True,
                 limits: Mapping[str, Limit] | None = None, max_wait: float = 30.0, timeout: float = 30.0,
                 max_attempts: int | None = None, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.budget = budget
        self.wait = wait
        self._limits = dict(limits) if limits is not None else {}
        self.max_wait = max_wait
        self.timeout = timeout
        self.max_attempts = max_attempts or self.default_max_attempts
        self.session = session or http_session(self.base_url)
        self.requests_sent = 0
        # The auth header values of the last few requests: a per-record error inside a 2xx answer
        # (a batch's errors[]) is built by the client after the loop returns, and masked with these.
        self._credentials_sent: dict[str, None] = {}

    def close(self) -> None:
        self.session.close()

    def reconnect(self) -> None:
        """A keep-alive session of its own, the one it had left as it is: a child process must
        not send on a connection its parent may still close."""
        self.session = http_session(self.base_url)

    def budget_is_this_process(self) -> bool:
        """Whether the calls are budgeted in this process's memory (no Redis): what another
        process spends from such a budget goes unseen here."""
        return self.budget is not None and bool(self.limits) and not getattr(self.budget, "shared", False)

    def budget_left(self) -> dict[str, int]:
        """Calls the shared budget would grant this account now, per kind ({} without a budget)."""
        if self.budget is None:
            return {}
        return {kind: self.budget.remaining(self.platform, self.budget_account, kind, limit)
                for kind, limit in self.limits.items()}

    # --- hooks --------------------------------------------------------------------------------
    @property
    def limits(self) -> dict[str, Limit]:
        """The account's limits by bucket kind; a kind absent is not budgeted."""
        return self._limits

    @property
    def budget_account(self) -> str:
        raise NotImplementedError

    def auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def refresh_auth(self, response: requests.Response) -> bool:
        return False

    def error_for(self, response: requests.Response, call: Call) -> PlatformError:
        raise NotImplementedError

    def observations(self, response: requests.Response, call: Call) -> dict[str, Observation]:
        return {}

    def demands(self, call: Call) -> list[Demand]:
        out = [Demand(call.kind, self.limits[call.kind])] if call.kind in self.limits else []
        if DAILY in self.limits and call.kind != DAILY:
            out.append(Demand(DAILY, self.limits[DAILY], min(call.cost, self.limits[DAILY].capacity)))
        return out

    def decode(self, response: requests.Response, call: Call) -> Any:
        if response.status_code == 204 or not response.content:
            return {}
        try:
            # orjson: a list page of 100 records parses several times faster than with
            # requests' decoder; the latter still reads what orjson refuses (another charset,
            # integers past 64 bits).
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            pass
        try:
            return response.json()
        except ValueError:
            raise TransientError(f"{call.where}: the answer is not JSON", platform=self.platform,
                                 status=response.status_code, entity=call.entity,
                                 external_id=call.external_id) from None

    # --- the loop -----------------------------------------------------------------------------
    def request(self, method: str, path: str, *, params: Any = None, json: Any = None, kind: str = STANDARD,
                cost: int = 1, safe: bool | None = None, entity: str | None = None,
                external_id: str | None = None) -> Any:
        """One API call (`path` below `base_url`); returns `decode` of the answer. `safe`: may a
        5xx or timeout be retried (default: every method but POST)."""
        call = Call(method, path, kind, cost, method != "POST" if safe is None else safe, entity, external_id)
        refreshed = held = False
        attempt = 0
        while True:
            attempt += 1
            grant = self._take_budget(call)
            sent: dict[str, str] = {}
            try:
                sent = self.auth_headers()
                self._remember_credentials(sent)
                response = self._exchange(call, params, json, sent)
            except requests.RequestException as exc:
                error: PlatformError = TransientError(f"{call.where}: {type(exc).__name__}", platform=self.platform,
                                                      entity=entity, external_id=external_id)
            else:
                self._observe(call, response, grant)
                if 200 <= response.status_code < 300:
                    try:
                        return self.decode(response, call)
                    except PlatformError as err:
                        raise _without_credentials(err, sent.values()) from None
                if response.status_code == 401 and not refreshed and self.refresh_auth(response):
                    refreshed = True
                    continue
                error = _without_credentials(self.error_for(_body_masked(response, sent.values()), call),
                                             sent.values())
                if isinstance(error, RateLimited):
                    held = self._penalize(error, call)
            if attempt >= self.max_attempts:
                raise error
            if isinstance(error, RateLimited):
                if not self.wait or error.resume_at is not None or error.retry_after > self.max_wait:
                    raise error
                if not held:
                    time.sleep(error.retry_after)
                continue  # a penalty the budget holds is waited out by the next acquire
            if isinstance(error, TransientError) and call.safe:
                time.sleep(min(error.retry_after or 0.2 * 2 ** (attempt - 1), 2.0, self.max_wait))
                continue
            raise error

    def url_for(self, call: Call) -> str:
        return self.base_url + call.path

    def hide_credentials(self, text: str) -> str:
        """`text` (a CRM's words from a 2xx answer: one record's error of a batch) with the
        credentials this client sent masked, as the loop masks the errors it raises itself."""
        return mask_secrets(text, tuple(self._credentials_sent))

    def without_credentials(self, error: PlatformError) -> PlatformError:
        """`error`, built from a 2xx answer's per-record entry, with this client's credentials masked."""
        return _without_credentials(error, tuple(self._credentials_sent))

    def _remember_credentials(self, sent: Mapping[str, str]) -> None:
        known = self._credentials_sent
        if any(value not in known for value in sent.values()):
            # A new dict each time (threads may share a client); a long-lived client whose OAuth
            # token was refreshed many times keeps the newest only.
            grown = {**known, **dict.fromkeys(sent.values())}
            self._credentials_sent = grown if len(grown) <= 4 else dict.fromkeys(sent.values())

    def _exchange(self, call: Call, params: Any, json: Any, headers: dict[str, str]) -> requests.Response:
        """The one place a request goes out (with `headers`, from `auth_headers()`) and its answer comes back."""
        self.requests_sent += 1
        response = self.session.request(call.method, self.url_for(call), params=params, json=json,
                                        headers=headers, timeout=self.timeout)
        metrics.observe_crm_response(self.platform, response.status_code)
        return response

    def _take_budget(self, call: Call) -> Grant | None:
        """The grant for one call (None without a budget), handed back to `observe` so the slot is
        counted from when the CRM answered."""
        if self.budget is None:
            return None
        demands = self.demands(call)
        if not demands:
            return None
        deadline = time.monotonic() + (self.max_wait if self.wait else 0.0)
        while True:
            grant = self.budget.try_acquire_many(self.platform, self.budget_account, demands)
            if grant.granted:
                return grant
            if grant.daily_exhausted or grant.wait_seconds > deadline - time.monotonic():
                kind = DAILY if grant.daily_exhausted else (grant.limited_by or call.kind)
                raise RateLimited(f"rate budget for {kind} calls spent", platform=self.platform,
                                  retry_after=grant.wait_seconds,
                                  resume_at=grant.resume_at if grant.daily_exhausted else None, policy=kind)
            time.sleep(grant.wait_seconds)

    def _observe(self, call: Call, response: requests.Response, grant: Grant | None) -> None:
        found = self.observations(response, call)  # read without a budget too: a client may keep what it saw
        if self.budget is None:
            return
        try:
            self.budget.observe(self.platform, self.budget_account, found, grant=grant)
        except Exception as exc:  # noqa: BLE001  the budget's bookkeeping must never fail a call that succeeded
            log.warning("%s rate budget observe failed: %s", self.platform, type(exc).__name__)

    def _penalize(self, error: RateLimited, call: Call) -> bool:
        """A 429 (or an abuse block) stops every worker of the account: for the wait the CRM named,
        in the bucket it named (else the call's). True when the penalty sits in a bucket this call
        draws from, so the next acquire waits it out; else the caller sleeps it."""
        metrics.count_throttled(self.platform)
        bucket = error.policy if error.policy in self.limits else call.kind
        if self.budget is None or bucket not in self.limits:
            return False  # no bucket of ours would ever read the penalty
        try:
            self.budget.penalize(self.platform, self.budget_account, error.retry_after, kind=bucket,
                                 limit=self.limits.get(bucket))
        except Exception as exc:  # noqa: BLE001  the 429 is raised either way
            log.warning("%s rate budget penalize failed: %s", self.platform, type(exc).__name__)
            return False
        return any(d.kind == bucket for d in self.demands(call))


def _without_credentials(error: PlatformError, sent: Iterable[str]) -> PlatformError:
    """`error` with the credentials the request carried (`sent`: its auth header values, and the
    token after a scheme such as "Bearer") masked in its message. The message is the CRM's own text,
    and a CRM or a proxy that echoes the caller's token there would otherwise put it in the job's
    error, the database, the log and the console."""
    message = mask_secrets(error.message, sent)
    if message != error.message:
        error.message = message
        error.args = (message,)
    return error


def _body_masked(response: requests.Response, sent: Iterable[str]) -> requests.Response:
    """The answer with the credentials it echoes masked in its body, before a platform's error
    builder reads it: builders cut the CRM's words short (Salesforce at 200 characters, Pipedrive
    at 300), and a token cut in two would no longer be found by the mask applied afterwards."""
    body = masked = response.content or b""
    for secret in _secret_parts(sent):
        masked = masked.replace(secret.encode(), b"***")
    if masked != body:
        response._content = masked      # requests keeps the read body here; .json() and .text read it
    return response


def _secret_parts(sent: Iterable[str]) -> list[str]:
    """Each credential, and the token after a scheme such as "Bearer", longest first; each also
    percent-encoded as a URL or a form carries it, for a CRM or proxy that echoes the request's
    URL or body (the escapes' hex in upper and lower case: servers differ)."""
    plain = {part for value in sent if value for part in (value, value.partition(" ")[2]) if len(part) >= 8}
    secrets = set(plain)
    for part in plain:
        for encoded in (quote(part, safe=""), quote_plus(part, safe="")):
            if encoded != part:
                secrets.add(encoded)
                secrets.add(_ESCAPE.sub(lambda m: m.group().lower(), encoded))
    return sorted(secrets, key=len, reverse=True)


_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def mask_secrets(text: str, sent: Iterable[str]) -> str:
    """`text` with each of `sent` (credentials: header values, tokens, client secrets), and the
    token after a scheme such as "Bearer", replaced by "***", plain or percent-encoded. Mask
    before cutting a text short: a secret cut in two is no longer found."""
    for secret in _secret_parts(sent):
        text = text.replace(secret, "***")
    return text


# --- reading answers (shared by the platforms' errors.py and limits.py) ------------------------
def retry_after_seconds(value: Any, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now; it may be seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, number) if math.isfinite(number) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def number_header(headers: Mapping[str, Any], name: str) -> float | None:
    """A non-negative number from a header (`headers` keyed in lower case), None when absent or
    not a number: a proxy's garbage header must not break the call that carried it."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return max(0.0, number) if math.isfinite(number) else None


def int_header(headers: Mapping[str, Any], name: str) -> int | None:
    number = number_header(headers, name)
    return None if number is None else int(number)


def lower_keys(headers: Mapping[str, Any]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def read_rate_headers(headers: Mapping[str, Any], readings: Iterable[tuple[str, str, str]]) -> dict[str, Observation]:
    """{bucket kind: Observation} from a response's headers; `readings` lists (bucket kind,
    Observation field, header name) for each header a CRM sends. Absent or garbage headers say nothing."""
    h = lower_keys(headers)
    found: dict[str, Observation] = {}
    for kind, attr, header in readings:
        value = number_header(h, header) if attr == "reset_in" else int_header(h, header)
        if value is not None:
            setattr(found.setdefault(kind, Observation()), attr, value)
    return found
