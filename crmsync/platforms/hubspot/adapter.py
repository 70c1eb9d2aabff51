"""`HubSpotAdapter`: the `crmsync.platforms.base.Adapter` interface on top of `HubSpotClient`.

External ids: contacts, companies, deals and tasks use HubSpot's record id ("151").
Activities are four HubSpot object types with their own ids, so their external id carries the
type: "note:512", "call:77", "meeting:9", "email:31" (nothing associates *to* an activity, so
these never appear as association targets).

Cursors (JSON dicts, stored verbatim by the engine):
* full listing (since=None): {"entity", "mode": "list", "object": "contacts", "after": "..."}
  pages the list endpoint with `after` (no 10,000 cap there) and gets associations inline.
* incremental: {"entity", "mode": "search", "object", "since": ms, "ts": ms, "op": "GTE"|"GT",
  "tie_ts": ms|None, "tie_id": id|None} - see `HubSpotClient.search_changed`; search returns no
  associations, so they are read per page with the v4 batch endpoint.
Activity listings walk notes, calls, meetings, emails in turn within one cursor.

Writes only send properties the portal defines and lets us write (property metadata, cached),
so a default mapping to a property a portal lacks is skipped instead of failing the batch.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
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
from crmsync.platforms.errors import Conflict, NotFound, PlatformError, ValidationError

from . import mapping as m
from . import webhooks
from .client import HubSpotClient, search_lookback
from .errors import PLATFORM

log = logging.getLogger(__name__)

METADATA_TTL = 600.0
# Property definitions (which custom properties exist, which are writable) are read by every
# listing, so they are kept a day: an incremental sync then costs its searches alone. The deletion
# sweep refreshes them (refresh_metadata), so a new custom property is picked up at the next sweep
# (`crmsync sync run CONFIG --sweep` at once).
PROPERTIES_TTL = 24 * 3600.0
MARKER_PROPERTY = "crmsync_id"


def split_external_id(entity: str, external_id: str) -> tuple[str, str]:
    """(HubSpot object type, HubSpot id) of an external id."""
    if entity == "activity":
        kind, sep, raw = str(external_id).partition(":")
        if not sep or kind not in m.ACTIVITY_OBJECTS:
            raise ValidationError(f"activity external id {external_id!r} is not '<type>:<id>'", platform=PLATFORM,
                                  entity=entity, external_id=str(external_id))
        return m.ACTIVITY_OBJECTS[kind], raw
    return m.OBJECT_TYPES[entity][0], str(external_id)


def join_external_id(entity: str, object_type: str, raw_id: Any) -> str:
    return f"{m.SINGULAR[object_type]}:{raw_id}" if entity == "activity" else str(raw_id)


class HubSpotAdapter(Adapter):
    platform = PLATFORM
    entities = ("contact", "company", "deal", "activity", "task")
    max_batch = 100

    def __init__(self, *, credentials: dict, base_url: str | None = None, account_id: str | None = None,
                 field_mappings: Mapping[str, str] | None = None, budget: Any = None, wait: bool = True,
                 save_credentials: Callable[[dict], None] | None = None, cache: Any = None,
                 redis_client: Any = None, lookback: timedelta | None = None,
                 marker_property: str | None = MARKER_PROPERTY, tenant_id: str | None = None,
                 client: HubSpotClient | None = None, load_credentials: Callable[[], dict | None] | None = None):
        super().__init__(credentials=credentials, base_url=base_url, account_id=account_id,
                         field_mappings=field_mappings, budget=budget, wait=wait,
                         save_credentials=save_credentials, cache=cache, redis_client=redis_client,
                         load_credentials=load_credentials)
        self.client = client or HubSpotClient(
            credentials, base_url, budget=budget, account_id=account_id, wait=wait,
            save_credentials=save_credentials, redis_client=self.redis,
            time_zone=(credentials or {}).get("time_zone"),
            limit_overrides=(credentials or {}).get("rate_limits"))
        self.cache = cache if cache is not None else MetadataCache(self.redis)
        # CRMSYNC_SEARCH_LOOKBACK_SECONDS: how far before the checkpoint an incremental search starts.
        self.lookback = lookback if lookback is not None else search_lookback()
        self.marker_property = marker_property
        self.tenant_id = tenant_id

    # --- identity ----------------------------------------------------------------------------

    def account_id(self) -> str:
        if not self._account_id:
            details = self.client.get_account_details()
            self._account_id = str(details["portalId"])
            self.client.set_account(self._account_id, details.get("timeZone"))
        return self._account_id

    def _meta_key(self, what: str) -> str:
        return f"hubspot:{self._account_id or self.client.budget_account}:{what}"

    # --- metadata (cached) -----------------------------------------------------------------

    def properties(self, object_type: str) -> dict[str, dict]:
        """The portal's property definitions by name ({} when the portal will not tell us)."""
        def load():
            try:
                return {p["name"]: p for p in self.client.get_properties(object_type)}
            except (NotFound, ValidationError) as exc:
                log.warning("HubSpot properties of %s unavailable: %s", object_type, exc)
                return {}
        return self.cache.get_or_load(self._meta_key(f"properties:{object_type}"), load, PROPERTIES_TTL)

    def refresh_metadata(self, entity: str) -> None:
        for object_type in m.OBJECT_TYPES[entity]:
            self.cache.invalidate(self._meta_key(f"properties:{object_type}"))

    def pipelines(self, object_type: str = "deals") -> list[dict]:
        return self.cache.get_or_load(self._meta_key(f"pipelines:{object_type}"),
                                      lambda: self.client.get_pipelines(object_type), METADATA_TTL)

    def _writable(self, object_type: str) -> set[str] | None:
        defs = self.properties(object_type)
        if not defs:
            return None  # unknown: send everything, let HubSpot judge
        return {name for name, d in defs.items()
                if not (d.get("modificationMetadata") or {}).get("readOnlyValue") and not d.get("calculated")}

    def _custom_property_names(self, object_type: str) -> list[str]:
        """The portal's own properties (hubspotDefined false): read so they reach custom_fields."""
        return sorted(name for name, d in self.properties(object_type).items()
                      if d.get("hubspotDefined") is False
                      or (d.get("hubspotDefined") is None and not name.startswith("hs_")
                          and name not in m.SYSTEM_PROPERTIES))

    def _read_properties(self, entity: str, object_type: str) -> list[str]:
        props = set(m.mapped_properties(entity, self.field_mappings, object_type))
        props |= set(self._custom_property_names(object_type))
        defs = self.properties(object_type)
        if defs:  # asking for names the portal lacks is harmless but lengthens the URL
            props = {p for p in props if p in defs or p == "hs_object_id"}
        return sorted(props)

    def _has_marker(self, object_type: str) -> bool:
        return bool(self.marker_property) and self.marker_property in self.properties(object_type)

    def ensure_marker_property(self, object_type: str) -> str:
        """Create the unique `crmsync_id` property on an object type: "present" (it was there),
        "created", or "refused: why" (creating a property needs the token's crm.schemas.*.write
        scope; without the property `find_existing` goes by email and domain only).
        It goes in the type's default group ("contactinformation", ...) when the portal has it,
        else its first group; a 409 means it exists already, which is what we want."""
        if not self.marker_property:
            return "refused: no marker property configured"
        if self._has_marker(object_type):
            return "present"
        try:
            groups = [g["name"] for g in self.client.get_property_groups(object_type)]
            preferred = f"{m.SINGULAR[object_type]}information"
            self.client.create_property(object_type, {
                "name": self.marker_property, "label": "crmsync id", "type": "string", "fieldType": "text",
                "groupName": preferred if preferred in groups or not groups else groups[0], "hasUniqueValue": True,
                "description": "Local id of the record in crmsync; lets a retried create find its record."})
            outcome = "created"
        except Conflict:
            outcome = "present"
        except PlatformError as exc:
            log.warning("could not create %s on %s: %s", self.marker_property, object_type, exc)
            return f"refused: {exc}"
        self.cache.invalidate(self._meta_key(f"properties:{object_type}"))
        return outcome

    def ensure_markers(self, entities) -> dict[str, str]:
        """`ensure_marker_property` on each object type of these entities that takes it."""
        return {object_type: self.ensure_marker_property(object_type)
                for entity in entities for object_type in m.OBJECT_TYPES.get(entity, ())
                if object_type in m.MARKED_OBJECT_TYPES}

    def _ensure_marker_before_create(self, object_type: str) -> None:
        """A config made before crmsync created the marker at `configs create` gets it at its first
        create. The outcome is kept a while (METADATA_TTL), so a token without the schema scope
        costs one refused POST per object type per TTL, not one per batch."""
        if object_type in m.MARKED_OBJECT_TYPES and self.marker_property and not self._has_marker(object_type):
            self.cache.get_or_load(self._meta_key(f"marker:{object_type}"),
                                   lambda: self.ensure_marker_property(object_type), METADATA_TTL)

    # --- mapping helpers -----------------------------------------------------------------

    def to_remote_record(self, entity: str, object_type: str, obj: dict,
                         associations: Mapping[str, str | None] | None = None) -> RemoteRecord:
        unified = m.map_hubspot_to_unified(entity, obj, self.tenant_id, self.field_mappings, object_type)
        found = {k: unified.pop(k) for k in ASSOCIATIONS[entity] if k in unified}
        if associations is not None:
            found = {**found, **associations}
        merged = (obj.get("properties") or {}).get("hs_merged_object_ids")
        return RemoteRecord(
            entity=entity, external_id=join_external_id(entity, object_type, obj["id"]), fields=unified,
            updated_at=unified.get("updated_at"), associations=found, archived=bool(obj.get("archived")),
            merged_ids=[join_external_id(entity, object_type, i) for i in m._parse_multi(merged) or []])

    def _association_map(self, entity: str, object_type: str, ids: list[str]) -> tuple[dict[str, dict], int]:
        """{hubspot id: {association field: external id or None}} via v4 batch reads."""
        out: dict[str, dict] = {str(i): {} for i in ids}
        spent = 0
        if not ids:
            return out, 0
        for name, target in m.association_targets(entity).items():
            rows = self.client.read_associations(object_type, target, ids)
            spent += (len(ids) + 999) // 1000
            for from_id, targets in rows.items():
                out.setdefault(from_id, {})[name] = _pick_v4(object_type, target, targets)
        return out, spent

    # --- reading -----------------------------------------------------------------------------

    def start_cursor(self, entity: str, since: datetime | None) -> dict:
        first = m.OBJECT_TYPES[entity][0]
        if since is None:
            return {"entity": entity, "mode": "list", "object": first, "after": None}
        return {"entity": entity, **self.client.changed_cursor(first, since, self.lookback), "tie_ts": None}

    def _next_object_cursor(self, entity: str, cursor: dict) -> dict | None:
        objects = m.OBJECT_TYPES[entity]
        pos = objects.index(cursor["object"]) + 1
        if pos >= len(objects):
            return None
        if cursor["mode"] == "list":
            return {"entity": entity, "mode": "list", "object": objects[pos], "after": None}
        since = cursor["since"]
        return {"entity": entity, "mode": "search", "object": objects[pos], "since": since, "ts": since,
                "op": "GTE", "tie_ts": None, "tie_id": None}

    def list_changed(self, entity: str, cursor: dict, page_size: int = 100) -> Page:
        spent = 0
        cursor = dict(cursor)
        while True:
            object_type = cursor["object"]
            props = self._read_properties(entity, object_type)
            if cursor["mode"] == "list":
                targets = list(m.association_targets(entity).values())
                body = self.client.list_page(object_type, after=cursor.get("after"), limit=page_size,
                                             properties=props, associations=targets)
                spent += 1
                results = body.get("results") or []
                after = ((body.get("paging") or {}).get("next") or {}).get("after")
                nxt = {**cursor, "after": after} if after else None
                empty = dict.fromkeys(ASSOCIATIONS[entity])
                records = [self.to_remote_record(entity, object_type, obj, None) for obj in results]
                for r in records:
                    r.associations = {**empty, **r.associations}
            else:
                results, nxt, n = self.client.search_changed(object_type, cursor, limit=page_size, properties=props)
                spent += n
                if nxt is not None:
                    nxt = {**nxt, "entity": entity}
                assoc, k = self._association_map(entity, object_type, [str(o["id"]) for o in results])
                spent += k
                records = [self.to_remote_record(entity, object_type, obj, assoc.get(str(obj["id"]), {}))
                           for obj in results]
            if nxt is None:
                nxt = self._next_object_cursor(entity, cursor)
            moved_on(cursor, nxt, platform=PLATFORM, entity=entity)   # an empty page would loop here
            if records or nxt is None:
                return Page(records=records, cursor=nxt, requests=spent)
            cursor = nxt

    def get_many(self, entity: str, external_ids: list[str]) -> list[RemoteRecord]:
        by_type: dict[str, list[str]] = {}
        for ext in external_ids:
            object_type, raw = split_external_id(entity, ext)
            by_type.setdefault(object_type, []).append(raw)
        out: list[RemoteRecord] = []
        for object_type, ids in by_type.items():
            found = self.client.batch_read(object_type, ids, properties=self._read_properties(entity, object_type))
            assoc, _ = self._association_map(entity, object_type, list(found))
            out.extend(self.to_remote_record(entity, object_type, obj, assoc.get(key, {}))
                       for key, obj in found.items())
        return out

    def list_ids(self, entity: str, cursor: dict | None, page_size: int = 100) -> IdPage:
        """The deletion sweep's listing: the list endpoint asked for hs_object_id only (it always
        adds updatedAt), 100 ids a request, each object type of the entity in turn.
        https://developers.hubspot.com/docs/api-reference/crm-objects-v3/basic/get-crm-v3-objects-objectType"""
        cursor = cursor or {"entity": entity, "mode": "list", "object": m.OBJECT_TYPES[entity][0], "after": None}
        spent = 0
        while True:
            object_type = cursor["object"]
            body = self.client.list_page(object_type, after=cursor.get("after"), limit=page_size,
                                         properties=["hs_object_id"])
            spent += 1
            ids = [(join_external_id(entity, object_type, obj["id"]), m.parse_datetime(obj.get("updatedAt")))
                   for obj in body.get("results") or []]
            after = ((body.get("paging") or {}).get("next") or {}).get("after")
            nxt = {**cursor, "after": after} if after else self._next_object_cursor(entity, cursor)
            moved_on(cursor, nxt, platform=PLATFORM, entity=entity)
            if ids or nxt is None:
                return IdPage(ids=ids, cursor=nxt, requests=spent)
            cursor = nxt

    # --- writing -----------------------------------------------------------------------------

    def _outbound_properties(self, entity: str, object_type: str, rec: OutboundRecord, *, creating: bool) -> dict:
        fields = dict(rec.fields)
        if entity == "activity":
            fields["type"] = m.ACTIVITY_TYPE_BY_OBJECT[object_type]
        props = m.map_unified_to_hubspot(entity, fields, self.field_mappings)
        if entity == "deal" and (creating or "dealstage" in props):
            self._resolve_pipeline_and_stage(props, creating)
        if creating and self._has_marker(object_type):
            props[self.marker_property] = str(rec.local_id)
        writable = self._writable(object_type)
        if writable is not None:
            dropped = sorted(p for p in props if p not in writable)
            if dropped:
                log.debug("skipping properties %s of %s: not writable in this portal", dropped, object_type)
            props = {k: v for k, v in props.items() if k in writable}
        if creating:
            props = {k: v for k, v in props.items() if v != ""}
        return props

    def _resolve_pipeline_and_stage(self, props: dict, creating: bool) -> None:
        """HubSpot requires a pipeline on a new deal and a stage id of that pipeline. Names that
        people and rules use ("Qualified to buy", "qualified_to_buy") match the stage's id or label
        once case and punctuation are dropped; the default pipeline stands in when none is given."""
        def norm(text) -> str:
            return "".join(ch for ch in str(text).lower() if ch.isalnum())
        pipelines = self.pipelines("deals") or []
        if not pipelines:
            return
        wanted = props.get("pipeline")
        pipeline = next((p for p in pipelines if wanted and norm(wanted) in (norm(p["id"]), norm(p.get("label", "")))),
                        None)
        if pipeline is None and (creating or wanted):
            pipeline = next((p for p in pipelines if p["id"] == "default"), pipelines[0])
            if wanted and not creating:
                return
        if pipeline is None:
            return
        props["pipeline"] = pipeline["id"]
        stage = props.get("dealstage")
        stages = pipeline.get("stages") or []
        match = next((st for st in stages if stage and norm(stage) in (norm(st["id"]), norm(st.get("label", "")))),
                     None)
        if match is not None:
            props["dealstage"] = match["id"]
        elif creating and not stage and stages:
            props["dealstage"] = min(stages, key=lambda st: st.get("displayOrder", 0))["id"]

    def _group(self, entity: str, records: list[OutboundRecord]) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for n, rec in enumerate(records):
            if entity == "activity":
                object_type = (split_external_id(entity, rec.external_id)[0] if rec.external_id
                               else m.object_type_for(entity, rec.fields))
            else:
                object_type = m.OBJECT_TYPES[entity][0]
            groups.setdefault(object_type, []).append(n)
        return groups

    def create_many(self, entity: str, records: list[OutboundRecord]) -> list[WriteResult]:
        results: list[WriteResult | None] = [None] * len(records)
        for object_type, positions in self._group(entity, records).items():
            self._ensure_marker_before_create(object_type)
            inputs = []
            for n in positions:
                rec = records[n]
                inputs.append({"properties": self._outbound_properties(entity, object_type, rec, creating=True),
                               "associations": m.hubspot_associations(entity, rec.associations, object_type)})
            refused_inline = []
            for item in self.client.batch_create(object_type, inputs):
                n = positions[item.index]
                rec = records[n]
                if item.ok:
                    assoc = {name: rec.associations.get(name) for name in ASSOCIATIONS[entity]}
                    remote = self.to_remote_record(entity, object_type, item.object, assoc)
                    results[n] = WriteResult(rec.local_id, remote.external_id, remote)
                elif isinstance(item.error, ValidationError) and inputs[item.index]["associations"]:
                    refused_inline.append(n)
                else:
                    existing = getattr(item.error, "existing_id", None)
                    results[n] = WriteResult(
                        rec.local_id, join_external_id(entity, object_type, existing) if existing else None,
                        error=item.error)
            self._create_without_associations(entity, object_type, records, refused_inline, results)
        return results  # type: ignore[return-value]

    def _create_without_associations(self, entity: str, object_type: str, records: list[OutboundRecord],
                                     positions: list[int], results: list) -> None:
        """HubSpot refuses a create whole when one inline association names a record it no longer
        holds (the target was deleted there): the record is created without them, then associated
        pair by pair; a pair refused again is that record's association error, not a lost record.
        A create refused for another reason fails the same way again and is reported as such."""
        if not positions:
            return
        inputs = [{"properties": self._outbound_properties(entity, object_type, records[n], creating=True)}
                  for n in positions]
        created = []
        for item in self.client.batch_create(object_type, inputs):
            n = positions[item.index]
            rec = records[n]
            if item.ok:
                created.append((n, item.object))
            else:
                results[n] = WriteResult(rec.local_id, None, error=item.error)
        made = [dataclasses.replace(records[n], external_id=join_external_id(entity, object_type, obj["id"]))
                for n, obj in created]
        current, refused = self._sync_associations(entity, object_type, made)
        for (n, obj), rec in zip(created, made, strict=True):
            raw = str(obj["id"])
            remote = self.to_remote_record(entity, object_type, obj, current.get(raw))
            results[n] = WriteResult(rec.local_id, rec.external_id, remote, association_errors=refused.get(raw, {}))

    def update_many(self, entity: str, records: list[OutboundRecord]) -> list[WriteResult]:
        results: list[WriteResult | None] = [None] * len(records)
        for object_type, positions in self._group(entity, records).items():
            inputs = [{"id": split_external_id(entity, records[n].external_id)[1],
                       "properties": self._outbound_properties(entity, object_type, records[n], creating=False)}
                      for n in positions]
            items = self.client.batch_update(object_type, inputs)
            moved = [n for n, item in zip(positions, items) if item.ok and records[n].associations]
            current, refused = self._sync_associations(entity, object_type, [records[n] for n in moved])
            for n, item in zip(positions, items):
                rec = records[n]
                if item.ok:
                    assoc = current.get(str(item.object["id"]))
                    remote = self.to_remote_record(entity, object_type, item.object, assoc)
                    results[n] = WriteResult(rec.local_id, rec.external_id, remote,
                                             association_errors=refused.get(str(item.object["id"]), {}))
                else:
                    results[n] = WriteResult(rec.local_id, rec.external_id, error=item.error)
        return results  # type: ignore[return-value]

    def _sync_associations(self, entity: str, object_type: str, records: list[OutboundRecord]
                           ) -> tuple[dict[str, dict], dict[str, dict[str, PlatformError]]]:
        """Make each record's associations of the given kinds point where the local record says,
        with one v4 batch per target type: add the new targets, then drop the old ones of the
        pairs that were made. A pair HubSpot refuses (207: the target is gone) keeps the old
        association and is returned as that record's error.
        Returns (the resulting association map by id, {id: {field: error}})."""
        if not records:
            return {}, {}
        ids = [split_external_id(entity, r.external_id)[1] for r in records]
        before, _ = self._association_map(entity, object_type, ids)
        targets = m.association_targets(entity)
        after = {raw: dict(before.get(raw, {})) for raw in ids}
        moves: dict[str, list[tuple[str, str, str | None, str | None]]] = {}   # field -> (id, name, old, new)
        for rec, raw in zip(records, ids):
            for name, wanted in rec.associations.items():
                if name not in targets:
                    continue
                old = after[raw].get(name)
                wanted = None if wanted in (None, "") else str(wanted)
                if old != wanted:
                    moves.setdefault(name, []).append((raw, name, old, wanted))
        refused: dict[str, dict[str, PlatformError]] = {}
        for name, changes in moves.items():
            target = targets[name]
            adds = [(raw, new) for raw, _, _, new in changes if new is not None]
            errors = dict(zip(adds, self.client.associate_many(
                object_type, target, adds, m.ASSOCIATION_TYPE_IDS[(object_type, target)]))) if adds else {}
            drops = []
            for raw, _, old, new in changes:
                err = errors.get((raw, new)) if new is not None else None
                if err is not None:
                    refused.setdefault(raw, {})[name] = err
                    continue
                if old is not None:
                    drops.append((raw, old))
                after[raw][name] = new
            if drops:
                self.client.dissociate_many(object_type, target, drops)
        return after, refused

    def archive_many(self, entity: str, external_ids: list[str]) -> list[WriteResult]:
        by_type: dict[str, list[str]] = {}
        for ext in external_ids:
            object_type, raw = split_external_id(entity, ext)
            by_type.setdefault(object_type, []).append(raw)
        for object_type, ids in by_type.items():
            self.client.batch_archive(object_type, ids)
        # HubSpot's batch archive answers 204 for missing ids too: archiving is idempotent.
        return [WriteResult(local_id=ext, external_id=ext) for ext in external_ids]

    def find_existing(self, entity: str, record: OutboundRecord) -> str | None:
        """The record a create with unknown outcome may have made.

        1. By the `crmsync_id` marker, when the portal has that unique property (a direct GET by
           idProperty: no search index lag). We stamp it on create only if the portal defines it.
        2. Contacts by email (GET by idProperty=email, also no lag).
        3. Companies by domain, deals by name (+ pipeline), tasks by subject + due time,
           activities by timestamp (+ subject): a search, which may miss a record created in
           the last few seconds - by the time a retry asks, the index has caught up.
        """
        object_type = m.object_type_for(entity, record.fields) if entity == "activity" else m.OBJECT_TYPES[entity][0]
        if self._has_marker(object_type):
            try:
                obj = self.client.get_object(object_type, str(record.local_id), id_property=self.marker_property,
                                             properties=["hs_object_id"])
                return join_external_id(entity, object_type, obj["id"])
            except NotFound:
                pass
        props = self._outbound_properties(entity, object_type, record, creating=True)
        if entity == "contact":
            email = props.get(m.field_table("contact", self.field_mappings)["email"][0])
            if not email:
                return None
            try:
                return str(self.client.get_object("contacts", email, id_property="email",
                                                  properties=["hs_object_id"])["id"])
            except NotFound:
                return None
        keys = {"company": ("domain", "name"), "deal": ("dealname", "pipeline"),
                "task": ("hs_task_subject", "hs_timestamp")}.get(entity)
        if entity == "activity":
            subject = {"calls": "hs_call_title", "meetings": "hs_meeting_title", "emails": "hs_email_subject"}
            keys = ("hs_timestamp", subject.get(object_type, ""))
        filters = []
        for prop in keys or ():
            value = props.get(prop)
            if value:
                if prop == "hs_timestamp":
                    value = str(m.to_epoch_ms(value))
                filters.append({"propertyName": prop, "operator": "EQ", "value": value})
            if entity == "company" and filters:
                break  # the domain alone identifies a company; the name only when there is no domain
        if not filters:
            return None
        found = self.client.search(object_type, filter_groups=[{"filters": filters}], properties=["hs_object_id"],
                                   limit=2, sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}])
        results = found.get("results") or []
        return join_external_id(entity, object_type, results[0]["id"]) if results else None

    # --- webhooks ----------------------------------------------------------------------------

    @classmethod
    def verify_webhook(cls, request: WebhookRequest, secret: str, *, now: datetime | None = None,
                       max_age_seconds: float = webhooks.MAX_AGE_SECONDS, legacy_signatures: bool = False) -> None:
        webhooks.verify(request, secret, now=now, max_age_seconds=max_age_seconds,
                        legacy_signatures=legacy_signatures)

    @classmethod
    def parse_webhook(cls, body: bytes) -> list[WebhookEvent]:
        return webhooks.parse(body)

    @classmethod
    def webhook_accounts(cls, body: bytes) -> list[str | None]:
        return [webhooks.portal_id(raw["portalId"]) for raw in webhooks.checked_events(body)]

    @classmethod
    def webhook_signers(cls, body: bytes) -> set[str]:
        """The portals whose secrets sign a delivery (one endpoint serves every portal)."""
        return webhooks.signing_portals(body)


_PRIMARY_TYPE_IDS = {1, 2, 5, 6}


def _pick_v4(from_type: str, to_type: str, targets: list[dict]) -> str | None:
    """One target id: the Primary-labelled one when there is one, else the lowest id."""
    if not targets:
        return None
    primary = [t for t in targets if any(a.get("label") == "Primary" or a.get("typeId") in _PRIMARY_TYPE_IDS
                                         for a in t.get("associationTypes") or [])]
    pool = primary or targets
    return str(min(int(t["toObjectId"]) for t in pool))
