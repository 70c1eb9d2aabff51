"""`SalesforceAdapter`: the `crmsync.platforms.base.Adapter` of one Salesforce org.

External ids are Salesforce's 18-character record ids; the key prefix tells Task (00T) from Event
(00U) and Note (002), so activity ids need no type tag.

Cursor (stored verbatim by the engine): {"v": 1, "entity", "objects": [...], "object", "ts": SOQL
datetime or None, "id": last Id or None}. A page is one SOQL query ordered by
(SystemModstamp, Id) that starts strictly after the last record read —
`WHERE SystemModstamp > ts OR (SystemModstamp = ts AND Id > id)` — so a burst of records sharing
one SystemModstamp is paged through by Id and nothing is read twice or skipped (REST API
"Query", resources_query.htm; the cursor field is indexed). An incremental listing starts
`LOOKBACK` before `since`: a long transaction stamps its rows when it starts and commits them
later, below a cursor that already passed. Activities list Events, then Tasks that are calls, then
Notes; tasks list the other Tasks.

Deletions: Outbound Messages report none and an incremental listing leaves them out (its cost
follows what changed), so the deletion sweep's `list_ids` finds them on its own cadence: `query`
leaves deleted records out (resources_query.htm).

Writes use sObject Collections (≤200 records, allOrNone false, one result per record). When the
org has the External ID field `crmsync_id__c` on the object, creates are upserts by it: a create
retried after a lost answer updates the record it made, and `find_existing` reads by it.

Notes ("Salesforce Object Reference: Note") have no custom fields, so no such marker: a lost create is
found by its parent, title and body. `ParentId` is not updateable, so a note moved locally to another
record (the association its parent came from changed) is made again on the new parent and the old
Note deleted; the link follows the new id. The new Note is made first and found again by the same
lookup if the delete did not happen, so a crash between the two leaves a stray copy for the next push
to finish, never a lost note. A note written here does not hold `occurred_at` (a Note's CreatedDate is
the time of the write), so its write results leave the field out and the engine stops comparing it.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
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
    moved_on,
)
from crmsync.platforms.errors import NotFound, PlatformError, ValidationError

from . import mapping as m
from . import webhooks
from .client import SalesforceClient
from .errors import PLATFORM, record_error
from .limits import account_limits
from .mapping import soql_datetime, soql_string

log = logging.getLogger(__name__)

METADATA_TTL = 600.0
LOOKBACK = timedelta(minutes=5)
_process_cache = MetadataCache()


class SalesforceAdapter(Adapter):
    platform = PLATFORM
    entities = ("contact", "company", "deal", "activity", "task")
    max_batch = 200

    def __init__(self, *, lookback: timedelta = LOOKBACK, session: Any = None, **common: Any):
        super().__init__(**common)
        self.client = SalesforceClient(
            self.credentials, base_url=self.base_url, budget=self.budget, account_id=self._account_id,
            wait=self.wait, save_credentials=self.save_credentials, redis_client=self.redis, session=session,
            limits=account_limits(self.credentials))
        self.cache = self.cache if self.cache is not None else _process_cache
        self.lookback = lookback

    # ------------------------------------------------------------------ identity & metadata
    def account_id(self) -> str:
        if not self._account_id:
            self._account_id = self.client.org_id()
        return self._account_id

    def describe(self, obj: str) -> dict[str, dict]:
        """{field name: describe of the field} of `obj` (cached: fields change rarely)."""
        key = f"salesforce:{self.account_id()}:describe:{obj}"
        return self.cache.get_or_load(key, lambda: {f["name"]: f for f in self.client.describe(obj)["fields"]},
                                      METADATA_TTL)

    def refresh_metadata(self, entity: str) -> None:
        self._check(entity)
        for obj in m.OBJECTS[entity]:
            self.cache.invalidate(f"salesforce:{self.account_id()}:describe:{obj}")

    def _has_marker(self, obj: str) -> bool:
        return bool(self.describe(obj).get(m.MARKER_FIELD, {}).get("externalId"))

    def _check(self, entity: str) -> None:
        if entity not in self.entities:
            raise ValidationError(f"Salesforce does not sync {entity!r}", platform=PLATFORM, entity=entity)

    # ------------------------------------------------------------------ records
    def to_remote(self, entity: str, raw: Mapping) -> RemoteRecord:
        obj = (raw.get("attributes") or {}).get("type") or m.object_of_id(raw["Id"])
        fields = m.to_unified(entity, raw, self.describe(obj), self.field_mappings)
        # Only the associations the object holds (a Note names one record): one it does not hold
        # is left out, so it never reads as cleared.
        associations = {name: fields.pop(name) for name in ASSOCIATIONS[entity] if name in fields}
        return RemoteRecord(entity=entity, external_id=str(raw["Id"]), fields=fields,
                            updated_at=fields.get("updated_at"), associations=associations,
                            archived=bool(raw.get("IsDeleted")))

    def _kind_filter(self, entity: str, obj: str) -> str | None:
        if obj != "Task":
            return None
        return m.CALL_CONDITION if entity == "activity" else m.NOT_CALL_CONDITION

    def _is_kind(self, entity: str, raw: Mapping) -> bool:
        obj = (raw.get("attributes") or {}).get("type") or m.object_of_id(raw.get("Id", ""))
        return obj != "Task" or (entity == "activity") == m.is_call(raw)

    # ------------------------------------------------------------------ reading
    def start_cursor(self, entity: str, since: datetime | None) -> dict:
        self._check(entity)
        objects = list(m.OBJECTS[entity])
        start = soql_datetime(since - self.lookback) if since is not None else None
        return {"v": 1, "entity": entity, "objects": objects, "object": objects[0], "since": start,
                "ts": None, "id": None}

    def _page_query(self, entity: str, cursor: dict, page_size: int) -> str:
        return f"{self._select(entity, cursor)} ORDER BY SystemModstamp, Id LIMIT {max(1, min(int(page_size), 2000))}"

    def _select(self, entity: str, cursor: dict) -> str:
        """SELECT the entity's fields of the cursor's object, from where the cursor stands."""
        obj = cursor["object"]
        fields = m.read_fields(entity, obj, self.describe(obj), self.field_mappings)
        where = [c for c in (self._kind_filter(entity, obj),) if c]
        if cursor.get("ts") and cursor.get("id"):
            ts, last = cursor["ts"], soql_string(cursor["id"])
            where.append(f"(SystemModstamp > {ts} OR (SystemModstamp = {ts} AND Id > {last}))")
        elif cursor.get("since"):
            where.append(f"SystemModstamp >= {cursor['since']}")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return f"SELECT {', '.join(fields)} FROM {obj}{clause}"  # noqa: S608  SOQL from describe() names; the cursor is our own timestamp

    def list_changed(self, entity: str, cursor: dict, page_size: int = 100) -> Page:
        self._check(entity)
        if cursor.get("entity") not in (None, entity):
            raise ValidationError(f"cursor of {cursor.get('entity')!r} used for {entity!r}", platform=PLATFORM)
        cursor = dict(cursor)
        before = self.client.requests_sent
        while True:
            if cursor.get("bulk") is None and self._first_page_of_full_pull(cursor):
                cursor["bulk"] = self._start_bulk(entity, cursor)
            if cursor.get("bulk"):
                records, following = self._bulk_page(entity, cursor, page_size)
                moved_on(cursor, following, platform=PLATFORM, entity=entity)   # an empty page would loop here
                if records or following is None:
                    return Page(records=records, cursor=following, requests=self.client.requests_sent - before)
                cursor = following
                continue
            raws = self.client.query_records(self._page_query(entity, cursor, page_size))
            records = [self.to_remote(entity, raw) for raw in raws]
            if len(raws) >= page_size:
                last = raws[-1]
                following = {**cursor, "ts": soql_datetime(m.parse_datetime(last["SystemModstamp"])),
                             "id": last["Id"]}
            else:
                following = self._next_object(cursor)
            moved_on(cursor, following, platform=PLATFORM, entity=entity)
            if records or following is None:
                return Page(records=records, cursor=following, requests=self.client.requests_sent - before)
            cursor = following

    # A full pull of an object holding at least this many records (of the entity's kind) reads them
    # through one Bulk API 2.0 query job (bulk_api_2_0.htm: "for large data sets"), `maxRecords` a
    # unit, instead of SOQL pages of 2,000: a few requests for the whole object. Incremental pulls
    # (a since) and small objects stay on SOQL, which costs no job to set up.
    bulk_threshold = 10_000

    @staticmethod
    def _first_page_of_full_pull(cursor: dict) -> bool:
        return not cursor.get("since") and not cursor.get("ts") and not cursor.get("id")

    def _start_bulk(self, entity: str, cursor: dict) -> dict | bool:
        """The bulk job of this object's full pull, or False (SOQL pages) for a small object."""
        obj = cursor["object"]
        kind = self._kind_filter(entity, obj)
        where = f" WHERE {kind}" if kind else ""
        if self.client.count(f"SELECT COUNT() FROM {obj}{where}") < self.bulk_threshold:  # noqa: S608  names from OBJECTS
            return False
        return {"job": self.client.start_bulk_query(self._select(entity, cursor)), "locator": None}

    def _bulk_page(self, entity: str, cursor: dict, page_size: int) -> tuple[list[RemoteRecord], dict | None]:
        """One page of the object's bulk job, and the cursor after it. The job's results are read
        again from the same locator if the unit dies, so a page is as idempotent as a SOQL page."""
        obj, bulk = cursor["object"], cursor["bulk"]
        rows, locator = self.client.bulk_results(bulk["job"], bulk["locator"], max_records=page_size)
        read = m.bulk_csv_reader(obj, self.describe(obj))
        records = [self.to_remote(entity, read(row)) for row in rows]
        if locator is not None:
            return records, {**cursor, "bulk": {**bulk, "locator": locator}}
        return records, self._next_object(cursor)

    @staticmethod
    def _next_object(cursor: dict) -> dict | None:
        """The pull's cursor at the start of the entity's next object (Event, then Task), or None
        after the last."""
        objects = cursor["objects"]
        pos = objects.index(cursor["object"]) + 1
        return {**cursor, "object": objects[pos], "ts": None, "id": None, "bulk": None} \
            if pos < len(objects) else None

    def get_many(self, entity: str, external_ids: list[str]) -> list[RemoteRecord]:
        self._check(entity)
        by_object: dict[str, list[str]] = {}
        for ext in dict.fromkeys(str(x) for x in external_ids):
            obj = m.object_of_id(ext)
            if obj in m.OBJECTS[entity] and len(ext) in (15, 18):
                by_object.setdefault(obj, []).append(ext)
        out = []
        for obj, ids in by_object.items():
            fields = m.read_fields(entity, obj, self.describe(obj), self.field_mappings)
            for raw in self.client.retrieve(obj, ids, fields):
                raw.setdefault("attributes", {"type": obj})
                if self._is_kind(entity, raw):
                    out.append(self.to_remote(entity, raw))
        return out

    def list_ids(self, entity: str, cursor: dict | None, page_size: int = 2000) -> IdPage:
        """The deletion sweep's listing: `SELECT Id, SystemModstamp` by Id, 2,000 a query (one
        batch), each object of the entity in turn; deleted records are not in `query`'s answer.
        Keyset by Id, so a record changed meanwhile is neither read twice nor skipped."""
        self._check(entity)
        objects = list(m.OBJECTS[entity])
        cursor = cursor or {"entity": entity, "object": objects[0], "id": None}
        before = self.client.requests_sent
        while True:
            obj = cursor["object"]
            where = [c for c in (self._kind_filter(entity, obj),) if c]
            if cursor.get("id"):
                where.append(f"Id > {soql_string(cursor['id'])}")
            clause = f" WHERE {' AND '.join(where)}" if where else ""
            rows = self.client.query_records(f"SELECT Id, SystemModstamp FROM {obj}{clause} ORDER BY Id "  # noqa: S608  SOQL from describe() names
                                             f"LIMIT {max(1, min(int(page_size), 2000))}")
            ids = [(str(r["Id"]), m.parse_datetime(r.get("SystemModstamp"))) for r in rows]
            if len(rows) >= page_size:
                following = {**cursor, "id": rows[-1]["Id"]}
            else:
                pos = objects.index(obj) + 1
                following = {**cursor, "object": objects[pos], "id": None} if pos < len(objects) else None
            moved_on(cursor, following, platform=PLATFORM, entity=entity)
            if ids or following is None:
                return IdPage(ids=ids, cursor=following, requests=self.client.requests_sent - before)
            cursor = following

    # ------------------------------------------------------------------ writing
    def _bodies(self, entity: str, records: list[OutboundRecord], *, creating: bool,
                current: Mapping[str, dict] | None = None
                ) -> tuple[dict[str, list[tuple[int, dict]]], dict[int, PlatformError]]:
        grouped: dict[str, list[tuple[int, dict]]] = {}
        failed: dict[int, PlatformError] = {}
        for n, rec in enumerate(records):
            try:
                if not creating and not rec.external_id:
                    raise m.MappingError("update without an external id")
                obj = m.object_for_write(entity, rec.fields, rec.external_id if not creating else None)
                body = m.to_salesforce(entity, obj, rec.fields, rec.associations, self.describe(obj),
                                       self.field_mappings, creating=creating,
                                       current=(current or {}).get(str(rec.external_id)))
                if creating and self._has_marker(obj):
                    body[m.MARKER_FIELD] = str(rec.local_id)
                grouped.setdefault(obj, []).append((n, {"attributes": {"type": obj}, **body}))
            except m.MappingError as exc:
                failed[n] = ValidationError(str(exc), platform=PLATFORM, entity=entity, external_id=rec.external_id)
        return grouped, failed

    def _write(self, entity: str, records: list[OutboundRecord], *, creating: bool,
               current: Mapping[str, dict] | None = None) -> list[WriteResult]:
        self._check(entity)
        self.account_id()
        grouped, failed = self._bodies(entity, records, creating=creating, current=current)
        results: list[WriteResult | None] = [None] * len(records)
        for n, err in failed.items():
            results[n] = WriteResult(records[n].local_id, records[n].external_id, error=err)
        for obj, items in grouped.items():
            bodies = [body for _, body in items]
            if not creating:
                bodies = [{**body, "Id": records[n].external_id} for n, body in items]
                answers = self.client.collection_update(bodies)
            elif self._has_marker(obj):
                answers = self.client.collection_upsert(obj, m.MARKER_FIELD, bodies)
            else:
                answers = self.client.collection_create(bodies)
            done = [a["id"] for a in answers if a.get("success")]
            fields = m.read_fields(entity, obj, self.describe(obj), self.field_mappings)
            fresh = {raw["Id"]: raw for raw in self.client.retrieve(obj, done, fields)} if done else {}
            for (n, _), answer in zip(items, answers, strict=True):
                rec = records[n]
                if answer.get("success") and answer.get("id") in fresh:
                    remote = self._written(entity, obj, fresh[answer["id"]])
                    results[n] = WriteResult(rec.local_id, remote.external_id, record=remote)
                else:
                    results[n] = WriteResult(rec.local_id, rec.external_id, error=record_error(
                        answer, entity=entity, external_id=rec.external_id))
        return results  # type: ignore[return-value]

    def _written(self, entity: str, obj: str, raw: Mapping) -> RemoteRecord:
        """A record as a write left it. A Note's CreatedDate is when we wrote it, not when the note
        was taken: leaving `occurred_at` out of the answer makes the engine stop comparing it for
        this record (a field the CRM does not keep), so the local value is never overwritten."""
        remote = self.to_remote(entity, {"attributes": {"type": obj}, **raw})
        if obj == "Note":
            remote.fields.pop("occurred_at", None)
        return remote

    def create_many(self, entity: str, records: list[OutboundRecord]) -> list[WriteResult]:
        return self._write(entity, records, creating=True)

    def update_many(self, entity: str, records: list[OutboundRecord]) -> list[WriteResult]:
        self._check(entity)
        notes = self._current_notes(entity, records)
        results: list[WriteResult | None] = [None] * len(records)
        moves: list[tuple[int, str]] = []
        refused: dict[int, dict[str, PlatformError]] = {}
        for n, rec in enumerate(records):
            cur = notes.get(str(rec.external_id))
            if cur is None:
                continue
            parent, errors = self._note_parent_after(rec, cur)
            if parent is not None:
                moves.append((n, parent))
            refused[n] = errors
        moved = {n for n, _ in moves}
        stay = [n for n in range(len(records)) if n not in moved]
        for n, res in zip(stay, self._write(entity, [records[n] for n in stay], creating=False, current=notes),
                          strict=True):
            res.association_errors.update(refused.get(n, {}))
            results[n] = res
        moved_results = self._move_notes([(records[n], notes[str(records[n].external_id)], parent)
                                          for n, parent in moves])
        for (n, _), res in zip(moves, moved_results, strict=True):
            results[n] = res
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ notes
    _NOTE_FIELDS = ("Id", "ParentId", "Title", "Body", "IsPrivate")

    def _current_notes(self, entity: str, records: list[OutboundRecord]) -> dict[str, dict]:
        """The Notes among an update's records as Salesforce holds them now (one retrieve): their
        parent decides a move, and an untitled note's Title follows its body."""
        ids = [str(r.external_id) for r in records
               if entity == "activity" and r.external_id and m.object_of_id(r.external_id) == "Note"]
        if not ids:
            return {}
        return {str(raw["Id"]): raw for raw in self.client.retrieve("Note", list(dict.fromkeys(ids)),
                                                                   list(self._NOTE_FIELDS))}

    @staticmethod
    def _note_parent_after(rec: OutboundRecord, cur: Mapping) -> tuple[str | None, dict[str, PlatformError]]:
        """(the record a Note moves to, or None to stay; associations refused). A Note stays on its
        parent until the association that parent came from changes (the others are not held, so
        they change nothing there); then it goes to the changed associations' contact, deal or
        company. A parent cleared with nothing to go to is refused: a Note always has one."""
        parent = str(cur.get("ParentId") or "")
        kind = next((name for name, target in m.NOTE_PARENTS if target == m.object_of_id(parent)), None)
        if kind is None or kind not in rec.associations:
            return None, {}
        wanted = m.note_parent(rec.associations)
        if wanted is None:
            return None, {kind: ValidationError(
                f"a Salesforce Note has exactly one parent (ParentId is required): it stays on {parent} "
                "until the note is given another contact, deal or company", platform=PLATFORM,
                entity="activity", external_id=rec.external_id)}
        return (wanted if wanted != parent else None), {}

    def _find_note(self, parent: str, title: str, body: str | None) -> str | None:
        """A Note on `parent` with this title and body (Body, a long text area, cannot be filtered
        in SOQL: compared here)."""
        rows = self.client.query_records(
            f"SELECT Id, Body FROM Note WHERE ParentId = {soql_string(parent)} AND Title = {soql_string(title)} "  # noqa: S608  values quoted by soql_string
            "ORDER BY CreatedDate DESC LIMIT 20")
        return next((str(r["Id"]) for r in rows if (r.get("Body") or None) == (body or None)), None)

    def _move_notes(self, moves: list[tuple[OutboundRecord, Mapping, str]]) -> list[WriteResult]:
        """ParentId is not updateable ("Salesforce Object Reference: Note"): a note moved to another
        record is made again there (its title, body and privacy, with this update's changes), then
        the old Note is deleted. The new one is looked up first, so a retry after a crash between
        the two finds it instead of making a third."""
        describe = self.describe("Note")
        out: list[WriteResult] = []
        for rec, cur, parent in moves:
            body = {"Title": cur.get("Title"), "Body": cur.get("Body"), "IsPrivate": cur.get("IsPrivate")}
            try:
                body.update(m.to_salesforce("activity", "Note", rec.fields, {}, describe, self.field_mappings,
                                            creating=False, current=cur))
            except m.MappingError as exc:
                out.append(WriteResult(rec.local_id, rec.external_id, error=ValidationError(
                    str(exc), platform=PLATFORM, entity="activity", external_id=rec.external_id)))
                continue
            body = {k: v for k, v in body.items() if v not in (None, "")}
            new_id = self._find_note(parent, str(body.get("Title")), body.get("Body"))
            if new_id is None:
                [answer] = self.client.collection_create([{"attributes": {"type": "Note"}, **body,
                                                           "ParentId": parent}])
                if not answer.get("success"):
                    out.append(WriteResult(rec.local_id, rec.external_id, error=record_error(
                        answer, entity="activity", external_id=rec.external_id)))
                    continue
                new_id = str(answer["id"])
            [gone] = self.client.collection_delete([str(rec.external_id)])
            err = None if gone.get("success") else record_error(gone, entity="activity", external_id=rec.external_id)
            if err is not None and not isinstance(err, NotFound):
                # The old Note is still there: keep the link on it; the next push finds the new one.
                out.append(WriteResult(rec.local_id, rec.external_id, error=err))
                continue
            fields = m.read_fields("activity", "Note", describe, self.field_mappings)
            fresh = self.client.retrieve("Note", [new_id], fields)
            if not fresh:
                out.append(WriteResult(rec.local_id, rec.external_id, error=NotFound(
                    f"the Note made on {parent} is gone", platform=PLATFORM, entity="activity", external_id=new_id)))
                continue
            remote = self._written("activity", "Note", fresh[0])
            out.append(WriteResult(rec.local_id, remote.external_id, record=remote))
        return out

    def archive_many(self, entity: str, external_ids: list[str]) -> list[WriteResult]:
        """Delete (to the Recycle Bin). An id already deleted or gone counts as archived."""
        self._check(entity)
        ids = [str(x) for x in external_ids]
        answers = self.client.collection_delete(ids) if ids else []
        out = []
        for ext, answer in zip(ids, answers, strict=True):
            err = None if answer.get("success") else record_error(answer, entity=entity, external_id=ext)
            out.append(WriteResult(ext, ext, error=None if isinstance(err, NotFound) else err))
        return out

    def find_existing(self, entity: str, record: OutboundRecord) -> str | None:
        """By the `crmsync_id__c` External ID the create stamped, else contacts by email,
        companies by exact name and notes by parent, title and body (SOQL, no index lag)."""
        self._check(entity)
        try:
            obj = m.object_for_write(entity, record.fields, None)
        except m.MappingError:
            return None
        if obj == "Note":
            try:
                body = m.to_salesforce(entity, obj, record.fields, record.associations, self.describe(obj),
                                       self.field_mappings, creating=True)
            except m.MappingError:
                return None
            return self._find_note(body["ParentId"], body["Title"], body.get("Body"))
        if self._has_marker(obj):
            found = self.client.get_by_external_id(obj, m.MARKER_FIELD, str(record.local_id))
            if found:
                return str(found["Id"])
        probe = {"contact": ("Email", record.fields.get("email")), "company": ("Name", record.fields.get("name"))}
        field, value = probe.get(entity, (None, None))
        if not value:
            return None
        rows = self.client.query_records(f"SELECT Id FROM {obj} WHERE {field} = {soql_string(value)} "  # noqa: S608  the value is quoted by soql_string
                                         "ORDER BY CreatedDate DESC LIMIT 1")
        return str(rows[0]["Id"]) if rows else None

    # ------------------------------------------------------------------ webhooks
    @classmethod
    def verify_webhook(cls, request: WebhookRequest, secret: str, *, now: datetime | None = None,
                       max_age_seconds: float = 300, legacy_signatures: bool = False) -> None:
        # Outbound Messages are not signed and carry no timestamp: the URL's token is the check.
        webhooks.verify_token(request, secret)

    @classmethod
    def parse_webhook(cls, body: bytes) -> list[WebhookEvent]:
        return webhooks.parse(body)

    @classmethod
    def webhook_accounts(cls, body: bytes) -> list[str | None]:
        return list(webhooks.accounts(body))

    # Outbound Messages are SOAP; a message must name the config's org, so the config must know it.
    webhook_content_type = "xml"
    webhook_needs_account = True

    @classmethod
    def same_account(cls, event_account: str, config_account: str) -> bool:
        # 15- and 18-character forms of one org id share their first 15 characters.
        return str(event_account)[:15] == str(config_account)[:15]

    @classmethod
    def webhook_ack(cls) -> tuple[str, str]:
        return webhooks.ACK, "text/xml; charset=utf-8"
