"""The one interface the sync engine sees of a CRM.

Each CRM lives in `crmsync/platforms/<name>/` (client, mapping, webhooks) and registers an
`Adapter` subclass in `crmsync.platforms.registry`. Nothing outside that folder knows the
CRM's wire format: records cross this boundary as unified dicts (see `crmsync.entities`),
with associations as external ids.

Incremental listing is cursor based. A cursor is a small JSON-serialisable dict owned by the
adapter (the engine stores it verbatim in `crm_sync_checkpoints` in the same transaction as
the page's rows), so a crash resumes at the last written page.
"""
from __future__ import annotations

import abc
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from crmsync.platforms.errors import PagingStuck, PlatformError

if TYPE_CHECKING:
    import requests


@dataclass
class RemoteRecord:
    """One record as a CRM holds it, already mapped to the unified shape.

    `fields`: unified field values (association fields excluded), plus `custom_fields`.
    `associations`: association field -> external id of the record it points to, e.g.
    {"company_id": "901"} on a contact (keys from `crmsync.entities.ASSOCIATIONS`).
    """
    entity: str
    external_id: str
    fields: dict[str, Any]
    updated_at: datetime | None = None
    associations: dict[str, str | None] = field(default_factory=dict)
    archived: bool = False
    # HubSpot keeps the ids merged into a contact; their links move to this record.
    merged_ids: list[str] = field(default_factory=list)


@dataclass
class Page:
    records: list[RemoteRecord]
    cursor: dict | None          # where the next page starts; None when this was the last page
    requests: int = 1            # HTTP requests spent on this page (for the incremental budget)


@dataclass
class IdPage:
    """One page of the deletion sweep's listing: every live record's id and last modification,
    nothing else (the smallest answer the CRM gives)."""
    ids: list[tuple[str, datetime | None]]
    cursor: dict | None          # None when this was the last page
    requests: int = 1


def moved_on(asked: dict | None, answered: dict | None, *, platform: str, entity: str | None = None,
             seen: set[str] | None = None) -> dict | None:
    """`answered`, the cursor after a listing page, unless it is `asked`, the one that page was
    read with: a CRM repeating its cursor would have a sync read that page for ever (PagingStuck).
    `seen`, kept by the caller across the pages it reads, collects the cursors read so far: a CRM
    going round (A -> B -> A) is caught too, when it names one of them again."""
    if answered is None:
        return None
    if answered == asked:
        raise PagingStuck(f"the listing's next cursor is the one just read ({_shown(answered)}): paging would "
                          "never end", platform=platform, entity=entity)
    if seen is not None:
        seen.add(_cursor_key(asked))
        if _cursor_key(answered) in seen:
            raise PagingStuck(f"the listing's next cursor was read before ({_shown(answered)}): paging goes "
                              "round and would never end", platform=platform, entity=entity)
    return answered


UNIT_STARTS_KEPT = 256


def went_round(unit_starts: list[str], asked: dict, answered: dict | None, *, platform: str,
               entity: str | None = None) -> list[str]:
    """The listing's unit starts (short digests of the cursors earlier units of it started at, as
    the checkpoint keeps them) with `asked`, the cursor this unit started at, added; PagingStuck
    when `answered`, the cursor after the unit, is one of them: a listing going round over more
    than one unit (`moved_on` catches it within a unit). The last UNIT_STARTS_KEPT starts are
    kept, so a cycle of up to that many units is caught within its second round."""
    starts = [*unit_starts, _digest(asked)][-UNIT_STARTS_KEPT:]
    if answered is not None and _digest(answered) in starts:
        raise PagingStuck(f"the listing's next cursor began an earlier unit of it ({_shown(answered)}): paging "
                          "goes round and would never end", platform=platform, entity=entity)
    return starts


def _digest(cursor: dict) -> str:
    import hashlib
    return hashlib.blake2b(_cursor_key(cursor).encode(), digest_size=8).hexdigest()


def _cursor_key(cursor: dict | None) -> str:
    return json.dumps(cursor, sort_keys=True, default=str)


def _shown(cursor: dict) -> str:
    return _cursor_key(cursor)[:200]


@dataclass
class OutboundRecord:
    """A local record on its way to the CRM. `external_id` is None for a create.
    `associations` carry external ids already resolved through the sync links."""
    local_id: str
    fields: dict[str, Any]
    external_id: str | None = None
    associations: dict[str, str | None] = field(default_factory=dict)


@dataclass
class WriteResult:
    local_id: str
    external_id: str | None
    record: RemoteRecord | None = None
    error: PlatformError | None = None
    # The record was written but the CRM refused these associations (field -> why, e.g. the
    # target is gone there): the engine reports them and does not count them as agreed.
    association_errors: dict[str, PlatformError] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class WebhookRequest:
    """What a webhook verifier needs of an HTTP request, independent of the web framework."""
    method: str
    url: str                      # the full URI as the CRM called it
    headers: Mapping[str, str]
    body: bytes


@dataclass
class WebhookEvent:
    """A CRM webhook event, normalized.

    `event_key` is unique per (platform, account) for one delivery of one change and is what
    `crm_webhook_events` deduplicates on. `action` is one of created, updated, deleted, merged,
    restored. For a merge, `merged_ids` are the ids that no longer exist.
    """
    platform: str
    account_id: str
    event_key: str
    entity: str | None            # unified entity, None for objects we do not sync
    action: str
    external_id: str
    occurred_at: datetime | None = None
    property_name: str | None = None
    property_value: Any = None
    merged_ids: list[str] = field(default_factory=list)
    payload: dict = field(default_factory=dict)


class Adapter(abc.ABC):
    """A connection to one CRM account, made from a config's credentials.

    `credentials` is the decrypted vault entry (a dict); an adapter must never put it in an
    error message or a log line. `field_mappings` is the config's {unified field: remote name}.
    `budget` is a `crmsync.ratelimit.RateBudget`; `wait` decides what happens when it says
    wait: True sleeps (the inline CLI), False raises `RateLimited` (a Celery task reschedules).
    `save_credentials` is called with the new dict after an OAuth refresh; `load_credentials()`
    returns the dict as last saved by any worker (a refresh under the account's lock re-reads
    it first, and skips the token call when another worker refreshed). `cache` is the
    engine's metadata cache; `redis` (given, else the cache's own Redis) holds what every worker
    of an account shares beyond the budget, such as the OAuth refresh lock.
    """
    platform: str = ""
    # Entities this CRM can sync.
    entities: tuple[str, ...] = ()
    max_batch: int = 100

    def __init__(self, *, credentials: dict, base_url: str | None = None,
                 account_id: str | None = None, field_mappings: Mapping[str, str] | None = None,
                 budget: Any = None, wait: bool = True,
                 save_credentials: Callable[[dict], None] | None = None, cache: Any = None,
                 redis_client: Any = None, load_credentials: Callable[[], dict | None] | None = None):
        self.credentials = credentials
        self.base_url = base_url
        self._account_id = account_id
        self.field_mappings = dict(field_mappings or {})
        self.budget = budget
        self.wait = wait
        self.save_credentials = save_credentials
        self.load_credentials = load_credentials
        self.cache = cache
        self.redis = redis_client if redis_client is not None else getattr(cache, "redis", None)

    def close(self) -> None:
        """Let go of the CRM connection (the adapter's client keeps one keep-alive session)."""
        client = getattr(self, "client", None)
        if client is not None:
            client.session.close()

    # --- bookkeeping (a job's requests spent; the console's budget left) -----------------
    def requests_sent(self) -> int:
        """HTTP requests this adapter's client has sent so far."""
        client = getattr(self, "client", None)
        return client.requests_sent if client is not None and hasattr(client, "requests_sent") else 0

    def budget_left(self) -> dict[str, int]:
        """Calls the shared rate budget would grant this account now, per kind ({} without one)."""
        client = getattr(self, "client", None)
        return client.budget_left() if client is not None and hasattr(client, "budget_left") else {}

    # --- identity ---------------------------------------------------------------------
    @abc.abstractmethod
    def account_id(self) -> str:
        """The CRM account (HubSpot portalId, Pipedrive company_id); looked up once if not given."""

    # --- reading ----------------------------------------------------------------------
    @abc.abstractmethod
    def start_cursor(self, entity: str, since: datetime | None) -> dict:
        """The cursor of a listing of records changed at or after `since` (None = everything)."""

    @abc.abstractmethod
    def list_changed(self, entity: str, cursor: dict, page_size: int = 100) -> Page:
        """One page of records changed since the cursor's point, oldest first."""

    @abc.abstractmethod
    def get_many(self, entity: str, external_ids: list[str]) -> list[RemoteRecord]:
        """The records that exist among these ids (missing or archived ones are left out)."""

    def refresh_metadata(self, entity: str) -> None:  # noqa: B027  an optional hook: adapters without metadata keep the no-op
        """Forget cached metadata of the entity (field definitions) so the next read loads it
        afresh; the deletion sweep calls it on its own cadence."""

    def ensure_markers(self, entities) -> dict[str, str]:
        """Make sure the CRM has the field a create stamps with the local id (by which
        `find_existing` recognises a create whose answer was lost), where crmsync can add it:
        {object type: "present" | "created" | "refused: why"}. {} for a CRM where it cannot."""
        return {}

    def list_ids(self, entity: str, cursor: dict | None, page_size: int = 100) -> IdPage:
        """One page of the ids of every live record (cursor None: the first page). The deletion
        sweep compares the whole listing with the sync links."""
        raise NotImplementedError(f"{self.platform} cannot list ids for the deletion sweep")

    # --- writing ----------------------------------------------------------------------
    @abc.abstractmethod
    def create_many(self, entity: str, records: list[OutboundRecord]) -> list[WriteResult]:
        """Create in batches of at most `max_batch`; one result per input, in order."""

    @abc.abstractmethod
    def update_many(self, entity: str, records: list[OutboundRecord]) -> list[WriteResult]:
        ...

    @abc.abstractmethod
    def archive_many(self, entity: str, external_ids: list[str]) -> list[WriteResult]:
        ...

    @abc.abstractmethod
    def find_existing(self, entity: str, record: OutboundRecord) -> str | None:
        """The external id of a record that a create may already have made (by email for
        contacts, domain for companies, else by the crmsync id stamped on create) — asked
        before retrying a create whose outcome is unknown, so a retry never duplicates."""

    # --- webhooks (class-level: run before the config is known) ------------------------
    @classmethod
    @abc.abstractmethod
    def verify_webhook(cls, request: WebhookRequest, secret: str, *, now: datetime | None = None,
                       max_age_seconds: float = 300, legacy_signatures: bool = False) -> None:
        """Raise `WebhookRejected` unless the request is authentic and fresh: signed no more than
        `max_age_seconds` ago where the CRM signs a timestamp; `legacy_signatures` lets a CRM accept
        older schemes that sign none (replayable, so off unless a config opts in)."""

    @classmethod
    @abc.abstractmethod
    def parse_webhook(cls, body: bytes) -> list[WebhookEvent]:
        """Normalized events of one delivery; raises `WebhookRejected(http_status=400)` on bad input."""

    @classmethod
    def webhook_accounts(cls, body: bytes) -> list[str | None]:
        """The CRM account of each event of a delivery, refusing exactly what `parse_webhook` refuses.
        The ingest app needs no more before it stores the delivery; a platform whose deliveries
        are large can answer this without building the events."""
        return [str(e.account_id) if e.account_id is not None else None for e in cls.parse_webhook(body)]

    # What a per-config webhook URL (Pipedrive, Salesforce) needs of its CRM besides the above.
    webhook_content_type: ClassVar[str] = "json"      # "json" or "xml" (SOAP)
    webhook_needs_account: ClassVar[bool] = False    # refuse deliveries until the config names its account

    @classmethod
    def same_account(cls, event_account: str, config_account: str) -> bool:
        """Does an event's account id name the config's account?"""
        return event_account == config_account

    @classmethod
    def webhook_ack(cls) -> tuple[str, str] | None:
        """(body, content type) the CRM must get back to stop redelivering; None: a JSON summary."""
        return None


def http_session(base_url: str) -> requests.Session:
    """A keep-alive session for one CRM, with the environment's proxy and CA settings read once.

    requests re-reads the proxy variables and stats ~/.netrc on every call of a session that
    trusts the environment; read once here, a page costs fewer syscalls. It also keeps a
    ~/.netrc entry from replacing the CRM's Authorization header."""
    import os

    # Imported here: the sync engine imports this module, and a process whose pages a child reads
    # (`sync run --inline`) need never load requests.
    import requests

    session = requests.Session()
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False
    return session


def _finite(literal: str) -> float:
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {literal[:40]} is out of range")
    return value


def _not_json(name: str):
    raise ValueError(f"{name} is not JSON")


# No CRM payload or product event nests anywhere near this deep; JSON that does is an attack on
# the parser (a recursion error) before anyone has been authenticated.
MAX_JSON_DEPTH = 32
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
# Objects and arrays nest alike: both become [ ], everything else goes.
_AS_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))


def nested_deeper_than(body: bytes | str, limit: int) -> bool:
    """Whether the JSON text nests arrays/objects more than `limit` deep, found without parsing it:
    strings dropped, the brackets kept, then the innermost pairs removed one level per pass (a
    C-speed bytes.replace each), at most `limit` + 1 passes. Brackets that stop shrinking are
    unbalanced (not JSON); they count as too deep only if the openers left could still take a
    parser past the limit."""
    text = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    brackets = _STRING.sub(b"", text).translate(_AS_BRACKETS, _NOT_BRACKET)
    if b"[" * (limit + 1) in brackets:   # the usual attack, [[[[..., found in one scan
        return True
    for level in range(limit + 1):
        inner = brackets.replace(b"[]", b"")
        if len(inner) == len(brackets):
            return level + brackets.count(b"[") > limit
        brackets = inner
    return True


def strict_json(body: bytes | str) -> Any:
    """JSON as PostgreSQL's jsonb can store it: NaN, Infinity, numbers beyond a double (1e999) and
    strings holding NUL (\\u0000) are refused here, where a clear 400 can say so, not later when
    the events are written; so is nesting deeper than MAX_JSON_DEPTH, before the parser recurses."""
    if (b"\\u0000" if isinstance(body, bytes) else "\\u0000") in body:
        raise ValueError("a string holds a NUL character (\\u0000)")
    if nested_deeper_than(body, MAX_JSON_DEPTH):
        raise ValueError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
    return json.loads(body, parse_constant=_not_json, parse_float=_finite)
