"""`PipedriveAdapter`: the `crmsync.platforms.base.Adapter` of one Pipedrive company account.

Cursor (stored verbatim by the sync engine): {"v": 1, "entity": "contact", "since": RFC 3339 or
None, "next": Pipedrive's opaque next_cursor or None}. A page is GET /api/v2/{objects}
?updated_since=since&sort_by=update_time&sort_direction=asc&cursor=next. `updated_since` is
inclusive, so a record at the boundary comes twice across runs; the engine's upsert is idempotent.
Activities and tasks both live in /activities; each listing keeps only its own kind (by type), so
a page may hold fewer records than asked, even none, with a cursor to continue.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from crmsync.cache import MetadataCache
from crmsync.entities import ASSOCIATIONS
from crmsync.platforms.base import (
    Adapter,
    IdPage,
    OutboundRecord,
    Page,
    RemoteRecord,
    WebhookEvent,
    WebhookRequest,
    WriteResult,
)
from crmsync.platforms.errors import (
    AuthenticationError,
    NotFound,
    PlatformError,
    RateLimited,
    ValidationError,
)
from crmsync.platforms.pipedrive import mapping
from crmsync.platforms.pipedrive.client import DEFAULT_BASE_URL, PLATFORM, PipedriveClient
from crmsync.platforms.pipedrive.limits import account_limits, is_oauth
from crmsync.platforms.pipedrive.mapping import (
    OBJECT_BY_ENTITY,
    MappingError,
    PipedriveMetadata,
    classify_pipedrive_activity,
    format_time,
)
from crmsync.platforms.pipedrive.webhooks import parse_webhook_body, verify_basic_auth

# Seconds. Field lists, stages and activity types change rarely, and every listing maps through
# them: kept a day, so an incremental sync costs its listings alone; the deletion sweep refreshes
# them (refresh_metadata) on its own cadence.
METADATA_TTL = 24 * 3600.0
# A custom field with this name (any object) gets the crmsync local id on create, so
# `find_existing` can find a record whose create answer was lost even without email/domain.
CRMSYNC_ID_FIELD = "crmsync_id"
MARKED_OBJECTS = ("person", "organization", "deal")

# How far back find_existing scans recent changes before it falls back to the search endpoint.
FIND_LOOKBACK = timedelta(hours=2)
FIND_MAX_PAGES = 4
SEARCH_LIMIT = 100      # candidates a search fallback confirms on the full records

_process_cache = MetadataCache()  # when the caller gives none: one per process, not per adapter


class PipedriveAdapter(Adapter):
    platform = PLATFORM
    entities = ("contact", "company", "deal", "activity", "task")
    # Pipedrive has no batch writes: a batch is one request per record. 20 fits the smallest burst
    # window (Lite, 20 per 2 s), so a Celery push step (wait=False) is not cut off by our own budget
    # halfway through a batch.
    max_batch = 20

    def __init__(self, *, credentials: dict, base_url: str | None = None, account_id: str | None = None,
                 field_mappings: Mapping[str, str] | None = None, budget: Any = None, wait: bool = True,
                 save_credentials: Callable[[dict], None] | None = None, cache: Any = None,
                 session: Any = None, max_wait: float = 30.0, redis_client: Any = None,
                 load_credentials: Callable[[], dict | None] | None = None):
        super().__init__(credentials=credentials, base_url=base_url, account_id=account_id,
                         field_mappings=field_mappings, budget=budget, wait=wait,
                         save_credentials=save_credentials, cache=cache, redis_client=redis_client,
                         load_credentials=load_credentials)
        token = credentials.get("api_token") or credentials.get("token")
        # The whole entry travels with the token set: a refresh saves it back, and what the entry
        # says besides the tokens (a custom token_url, rate_limits, plan) must survive that.
        oauth = dict(credentials) if is_oauth(credentials) else None
        self.client = PipedriveClient(
            token, oauth=oauth, base_url=base_url or (oauth or {}).get("api_domain") or DEFAULT_BASE_URL,
            budget=budget, wait=wait, account=account_id, session=session, max_wait=max_wait,
            save_credentials=save_credentials, load_credentials=load_credentials, redis_client=self.redis,
            token_url=credentials.get("token_url"),
            limits=account_limits(credentials))
        self.cache = cache if cache is not None else _process_cache

    # ------------------------------------------------------------------ identity
    def account_id(self) -> str:
        if self._account_id is None:
            me = self.client.users_me()
            if me.get("company_id") is None:
                raise AuthenticationError("users/me did not name a company", platform=PLATFORM)
            self._account_id = str(me["company_id"])
        self.client.account = self._account_id
        return self._account_id

    # ------------------------------------------------------------------ metadata
    def _cached(self, part: str, load: Callable[[], Any]) -> Any:
        key = f"pipedrive:{self.account_id()}:{part}"
        return self.cache.get_or_load(key, load, METADATA_TTL)

    def metadata(self, entity: str) -> PipedriveMetadata:
        """What mapping `entity` needs: its object's fields; stages and pipelines for deals;
        activity types for activities and tasks."""
        obj = OBJECT_BY_ENTITY[entity]
        meta = PipedriveMetadata(fields={obj: self._cached(
            f"fields:{obj}", lambda: [PipedriveMetadata.field_from_api(f) for f in self.client.list_fields(obj)])})
        if entity == "deal":
            meta.pipelines = self._cached("pipelines", lambda: {
                str(p["id"]): p.get("name") for p in self.client.list_pipelines()})
            meta.stages = self._cached("stages", lambda: {
                str(s["id"]): {"name": s.get("name"), "pipeline_id": s.get("pipeline_id")}
                for s in self.client.list_stages()})
        if entity in ("activity", "task"):
            meta.activity_types = self._cached("activity_types", lambda: [
                t.get("key_string") for t in self.client.list_activity_types()
                if t.get("key_string") and t.get("active_flag", True)])
        return meta

    def ensure_markers(self, entities) -> dict[str, str]:
        """The `crmsync_id` custom field (a create's local id, by which `find_existing` knows a
        create whose answer was lost) on the persons, organizations and deals of these entities:
        {object: "present" | "created" | "refused: why"}. Activities take no custom field through
        the API (activityFields is read-only), so tasks and activities are matched by their values."""
        out: dict[str, str] = {}
        for entity in entities:
            obj = OBJECT_BY_ENTITY.get(entity)
            if obj not in MARKED_OBJECTS or obj in out:
                continue
            if self.metadata(entity).custom_field_by_name(obj, CRMSYNC_ID_FIELD) is not None:
                out[obj] = "present"
                continue
            try:
                self.client.create_field(obj, CRMSYNC_ID_FIELD)
                out[obj] = "created"
            except PlatformError as exc:    # a user who may not add fields: matched by values, as before
                out[obj] = f"refused: {exc}"
        if "created" in out.values():
            self.invalidate_metadata()
        return out

    def refresh_metadata(self, entity: str) -> None:
        self.invalidate_metadata()

    def invalidate_metadata(self) -> None:
        for part in ("fields:person", "fields:organization", "fields:deal", "fields:activity", "pipelines",
                     "stages", "activity_types"):
            self.cache.invalidate(f"pipedrive:{self.account_id()}:{part}")

    # ------------------------------------------------------------------ records
    def to_remote(self, entity: str, raw: Mapping, meta: PipedriveMetadata | None = None) -> RemoteRecord:
        """A Pipedrive record (v1 or v2 shape) as a `RemoteRecord` of `entity`."""
        meta = meta or self.metadata(entity)
        fields = mapping.to_unified(entity, raw, meta, self.field_mappings)
        associations = {name: fields.pop(name, None) for name in ASSOCIATIONS[entity]}
        normalized = mapping.normalize_record(OBJECT_BY_ENTITY[entity], raw)
        return RemoteRecord(entity=entity, external_id=str(normalized["id"]), fields=fields,
                            updated_at=fields.get("updated_at"), associations=associations,
                            archived=bool(normalized.get("is_deleted")))

    def _is_kind(self, entity: str, raw: Mapping) -> bool:
        return entity not in ("activity", "task") or classify_pipedrive_activity(raw) == entity

    def _check(self, entity: str) -> str:
        if entity not in self.entities:
            raise ValidationError(f"Pipedrive does not sync {entity!r}", platform=PLATFORM, entity=entity)
        return OBJECT_BY_ENTITY[entity]

    def start_cursor(self, entity: str, since: datetime | None) -> dict:
        self._check(entity)
        return {"v": 1, "entity": entity, "since": format_time(since) if since else None, "next": None}

    def list_changed(self, entity: str, cursor: dict, page_size: int = 100) -> Page:
        obj = self._check(entity)
        if cursor.get("entity") not in (None, entity):
            raise ValidationError(f"cursor of {cursor.get('entity')!r} used for {entity!r}", platform=PLATFORM)
        self.account_id()
        meta = self.metadata(entity)
        before = self.client.requests_sent
        page = self.client.list_records(obj, updated_since=cursor.get("since"), cursor=cursor.get("next"),
                                        limit=page_size, sort_by="update_time", sort_direction="asc")
        records = [self.to_remote(entity, raw, meta) for raw in page.items if self._is_kind(entity, raw)]
        following = dict(cursor, entity=entity, next=page.next_cursor) if page.next_cursor else None
        return Page(records=records, cursor=following, requests=self.client.requests_sent - before)

    def get_many(self, entity: str, external_ids: list[str]) -> list[RemoteRecord]:
        obj = self._check(entity)
        ids = [i for i in dict.fromkeys(str(x) for x in external_ids) if i.isdigit()]
        if not ids:
            return []
        self.account_id()
        meta = self.metadata(entity)
        raws = self.client.get_records(obj, ids)
        return [self.to_remote(entity, raw, meta) for raw in raws
                if self._is_kind(entity, raw) and not raw.get("is_deleted")]

    def list_ids(self, entity: str, cursor: dict | None, page_size: int = 500) -> IdPage:
        """The deletion sweep's listing: GET /api/v2/{objects} in id order, 500 a page (v2's
        largest; it has no way to ask for fewer fields). Deleted records are not listed.
        https://developers.pipedrive.com/docs/api/v1/Persons#getPersons"""
        obj = self._check(entity)
        self.account_id()
        before = self.client.requests_sent
        page = self.client.list_records(obj, cursor=(cursor or {}).get("next"), limit=page_size,
                                        sort_by="id", sort_direction="asc")
        ids = [(str(raw["id"]), mapping.parse_time(raw.get("update_time"))) for raw in page.items
               if raw.get("id") is not None and self._is_kind(entity, raw) and not raw.get("is_deleted")]
        following = {"entity": entity, "next": page.next_cursor} if page.next_cursor else None
        return IdPage(ids=ids, cursor=following, requests=self.client.requests_sent - before)

    # ------------------------------------------------------------------ writing
    def _body(self, entity: str, record: OutboundRecord, meta: PipedriveMetadata, *, create: bool) -> dict:
        unified = dict(record.fields)
        for name in ASSOCIATIONS[entity]:
            if name in record.associations:
                unified[name] = record.associations[name]
            else:
                unified.pop(name, None)  # local ids never reach Pipedrive
        body = mapping.to_pipedrive(entity, unified, meta, self.field_mappings)
        if create:
            if entity == "contact" and not (body.get("name") or body.get("first_name") or body.get("last_name")):
                body["name"] = mapping.person_placeholder_name(unified)
            if entity == "activity":
                body.setdefault("done", True)  # a logged call/meeting/email has happened
            stamp = meta.custom_field_by_name(OBJECT_BY_ENTITY[entity], CRMSYNC_ID_FIELD)
            if stamp is not None:
                body.setdefault("custom_fields", {})[stamp["key"]] = record.local_id
        return body

    def _write(self, entity: str, records: list[OutboundRecord], create: bool) -> list[WriteResult]:
        obj = self._check(entity)
        self.account_id()
        meta = self.metadata(entity)
        results: list[WriteResult] = []
        stop: PlatformError | None = None  # after an auth failure or a spent budget, skip the rest
        for record in records:
            if stop is not None:
                results.append(WriteResult(record.local_id, record.external_id, error=stop))
                continue
            try:
                if not create and not record.external_id:
                    raise ValidationError("update without an external id", platform=PLATFORM, entity=entity)
                try:
                    body = self._body(entity, record, meta, create=create)
                except MappingError as exc:
                    raise ValidationError(str(exc), platform=PLATFORM, entity=entity,
                                          external_id=record.external_id) from None
                raw = self.client.create_record(obj, body) if create else \
                    self.client.update_record(obj, record.external_id, body)
                remote = self.to_remote(entity, raw, meta)
                results.append(WriteResult(record.local_id, remote.external_id, record=remote))
            except PlatformError as exc:
                results.append(WriteResult(record.local_id, record.external_id, error=exc))
                if isinstance(exc, (AuthenticationError, RateLimited)):
                    stop = exc
        return results

    def create_many(self, entity: str, records: list[OutboundRecord]) -> list[WriteResult]:
        return self._write(entity, records, create=True)

    def update_many(self, entity: str, records: list[OutboundRecord]) -> list[WriteResult]:
        return self._write(entity, records, create=False)

    def archive_many(self, entity: str, external_ids: list[str]) -> list[WriteResult]:
        """DELETE each record (Pipedrive keeps it 30 days as `is_deleted`). An id already gone
        counts as archived: deleting is idempotent from the engine's point of view."""
        obj = self._check(entity)
        self.account_id()
        results: list[WriteResult] = []
        for external_id in external_ids:
            try:
                self.client.delete_record(obj, external_id)
                results.append(WriteResult(external_id, external_id))
            except NotFound:
                results.append(WriteResult(external_id, external_id))
            except PlatformError as exc:
                results.append(WriteResult(external_id, external_id, error=exc))
        return results

    # ------------------------------------------------------------------ duplicates
    def find_existing(self, entity: str, record: OutboundRecord) -> str | None:
        """Where a create whose answer was lost may have landed.

        1. Scan the records changed in the last `FIND_LOOKBACK` (newest first, at most
           `FIND_MAX_PAGES` pages of 500; activities only among the linked deal's, person's or
           organization's) for one that matches: the `crmsync_id` custom field stamped on create
           when the account has one, else contact: an email; company: the domain (a mapped custom
           field) or the exact name; deal: the title plus the same person/organization;
           activity/task: type, subject and due date. A fresh create is found even before
           Pipedrive's search index shows it, for 10 tokens per page.
        2. Older creates (a retry parked for hours by a spent daily budget): the search endpoint,
           by exact email (persons), name (organizations) or title (deals).
        """
        obj = self._check(entity)
        self.account_id()
        meta = self.metadata(entity)
        try:
            wanted = self._body(entity, record, meta, create=True)
        except MappingError:
            return None
        match = self._matcher(entity, record, meta, wanted)
        if match is None:
            return None
        filters: dict[str, Any] = {}
        if obj == "activity":
            for assoc, param in (("deal_id", "deal_id"), ("contact_id", "person_id"), ("company_id", "org_id")):
                if record.associations.get(assoc):
                    filters[param] = int(record.associations[assoc])
                    break
            else:
                return None  # scanning every activity of the account is not worth it
        since = None if obj == "activity" else datetime.now(UTC) - FIND_LOOKBACK
        cursor = None
        for _ in range(FIND_MAX_PAGES):
            page = self.client.list_records(obj, updated_since=since, sort_by="update_time",
                                            sort_direction="desc", limit=500, cursor=cursor, **filters)
            for raw in page.items:
                if not raw.get("is_deleted") and match(raw):
                    return str(raw["id"])
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        return self._search_fallback(entity, record, match, wanted)

    def _matcher(self, entity: str, record: OutboundRecord, meta: PipedriveMetadata,
                 wanted: dict) -> Callable[[Mapping], bool] | None:
        obj = OBJECT_BY_ENTITY[entity]
        stamp = meta.custom_field_by_name(obj, CRMSYNC_ID_FIELD)
        if stamp is not None:
            key = stamp["key"]
            return lambda raw: str((raw.get("custom_fields") or {}).get(key)) == record.local_id
        fields = record.fields
        if entity == "contact":
            email = str(fields.get("email") or "").casefold()
            if not email:
                return None
            return lambda raw: email in [str(e.get("value", "")).casefold() for e in raw.get("emails") or []]
        if entity == "company":
            domain_key = (wanted.get("custom_fields") or {})
            mapped = self.field_mappings.get("domain")
            if fields.get("domain") and mapped:
                fdef = meta.custom_field_by_name(obj, mapped) or meta.field_by_key(obj, mapped)
                if fdef is not None and fdef["key"] in domain_key:
                    domain = str(fields["domain"]).casefold()
                    return lambda raw: str((raw.get("custom_fields") or {}).get(fdef["key"]) or "").casefold() == domain
            name = str(fields.get("name") or "").casefold()
            if not name:
                return None
            return lambda raw: str(raw.get("name") or "").casefold() == name
        if entity == "deal":
            if not wanted.get("title"):
                return None
            keys = [k for k in ("title", "person_id", "org_id") if wanted.get(k) is not None]
            return lambda raw: all(raw.get(k) == wanted[k] for k in keys)
        keys = [k for k in ("type", "subject", "due_date") if wanted.get(k) is not None]
        if not keys:
            return None
        return lambda raw: all(raw.get(k) == wanted[k] for k in keys) and self._is_kind(entity, raw)

    def _search_fallback(self, entity: str, record: OutboundRecord, match: Callable[[Mapping], bool],
                         wanted: Mapping) -> str | None:
        fields = record.fields
        term, field = {"contact": (fields.get("email"), "email"), "company": (fields.get("name"), "name"),
                       "deal": (wanted.get("title"), "title")}.get(entity, (None, None))
        if not term or not str(term).strip():
            return None       # with exact_match the API takes a 1-character term
        obj = OBJECT_BY_ENTITY[entity]
        filters = {}
        if entity == "deal":
            # Many deals share a title ("Renewal"): narrow to the organization and person it names.
            filters = {"organization_id": wanted.get("org_id"), "person_id": wanted.get("person_id")}
        try:
            # A search costs the same tokens whatever its limit (x-token-cost 20).
            items = self.client.search(obj, str(term), fields=field, exact_match=True, limit=SEARCH_LIMIT,
                                       **filters)
        except NotFound:
            return None
        ids = [str(item["id"]) for item in items if item.get("id") is not None]
        # search items are summaries: confirm each candidate on the full record
        for raw in self.client.get_records(obj, ids) if ids else []:
            if not raw.get("is_deleted") and match(raw):
                return str(raw["id"])
        return None

    # ------------------------------------------------------------------ webhooks
    @classmethod
    def verify_webhook(cls, request: WebhookRequest, secret: str, *, now: datetime | None = None,
                       max_age_seconds: float = 300, legacy_signatures: bool = False) -> None:
        # HTTP Basic carries no timestamp and has no versions: both options have nothing to act on.
        verify_basic_auth(request, secret)

    @classmethod
    def parse_webhook(cls, body: bytes) -> list[WebhookEvent]:
        return parse_webhook_body(body)


__all__ = ["PipedriveAdapter"]
