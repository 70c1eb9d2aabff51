"""In-memory HubSpot portal: records, unique emails, merges, associations, the search index view and
the change events that feed webhooks. Thread-safe through one re-entrant lock (tests and the admin
endpoints read ``state.records`` directly; take ``state.lock`` when iterating)."""
from __future__ import annotations

import bisect
import fnmatch
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from . import objects as ot
from .errors import ApiError, not_found, property_errors, validation

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_INT = re.compile(r"^-?\d+$")
SYSTEM_PROPS = {"createdate", "lastmodifieddate", "hs_lastmodifieddate", "hs_createdate", "hs_object_id",
                "hs_object_source", "hs_object_source_label"}


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    """HubSpot's timestamp form, 2024-01-31T09:30:00.123Z (isoformat: strftime was a sixth of a
    list answer's time)."""
    return datetime.fromtimestamp(ms // 1000, UTC).isoformat()[:19] + f".{ms % 1000:03d}Z"


def parse_time(value) -> int | None:
    """Epoch ms (int or digit string) or ISO-8601 -> epoch ms; None if unparseable."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    s = str(value).strip()
    if _INT.match(s):
        return int(s)
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


class Record:
    __slots__ = ("archived", "archived_at", "cache", "created", "id", "index_until", "indexed", "merged_into",
                 "props", "type", "updated")

    def __init__(self, type_: ot.ObjectType, id_: int, props: dict, created: int, updated: int):
        self.type = type_
        self.id = id_
        self.props = props
        self.created = created
        self.updated = updated
        self.archived = False
        self.archived_at = 0
        self.merged_into: int | None = None
        self.cache: dict = {}
        self.index_until = 0          # search sees `indexed` (older view) until this ms
        self.indexed = None           # (props, created, updated) or None = not yet in the index

    def touch(self, ms: int) -> None:
        self.updated = ms
        self.props[self.type.modified_prop] = iso(ms)
        if self.type.name == "contacts":
            self.props["hs_lastmodifieddate"] = iso(ms)
        self.cache = {}


class PortalState:
    """All records of one sandbox portal."""

    def __init__(self, portal_id: int = 12345678, app_id: int = 1160452):
        self.lock = threading.RLock()
        self.portal_id = portal_id
        self.app_id = app_id
        self.index_lag_ms = 0
        self.search_cap_mode = "after+limit"   # or "after": which page requests past 10,000 fail
        self.empty_properties = "omit"         # or "null": how requested-but-empty properties are returned
        self.listener: Callable[[list[dict]], None] | None = None  # receives change events
        self.clock: Callable[[], int] = now_ms
        self.reset()

    # ----- bookkeeping ---------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.records: dict[str, dict[int, Record]] = {name: {} for name in ot.TYPES}
            self._ids: dict[str, list[int]] = {name: [] for name in ot.TYPES}
            self.next_id = 101
            self.emails: dict[str, int] = {}      # lower(email) -> contact id (primary + additional emails)
            self.aliases: dict[tuple[str, int], int] = {}  # merged-away id -> survivor id
            self.assoc: dict[tuple[str, int], dict[str, dict[int, set[int]]]] = {}
            self.event_seq = 1000
            self.generation = getattr(self, "generation", 0) + 1
            self.created_properties: dict[str, dict[str, ot.PropertyDef]] = {}   # POST /crm/v3/properties

    def property_defs(self, type_name: str) -> dict[str, ot.PropertyDef]:
        """The portal's property definitions: HubSpot's and the seeded custom ones, plus any
        created through the properties API."""
        created = self.created_properties.get(type_name)
        return {**ot.PROPERTIES[type_name], **created} if created else ot.PROPERTIES[type_name]

    def create_property(self, type_name: str, d: ot.PropertyDef) -> None:
        with self.lock:
            if d.name in self.property_defs(type_name):
                raise ApiError(409, "CONFLICT", f"A property named '{d.name}' already exists.",
                               context={"propertyName": [d.name]})
            self.created_properties.setdefault(type_name, {})[d.name] = d
            self.generation += 1

    def bump(self) -> None:
        """Invalidate cached list pages; every write calls it (call it after editing records by hand)."""
        self.generation += 1

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def _emit(self, events: list[dict]) -> None:
        if events and self.listener is not None:
            self.listener(events)

    def change_event(self, type_: ot.ObjectType, kind: str, object_id: int, source: str, **fields) -> dict:
        self.event_seq += 1
        event = {"eventId": self.event_seq, "portalId": self.portal_id, "appId": self.app_id,
                 "occurredAt": self.clock(), "objectId": object_id, "changeSource": source}
        if type_.engagement:
            event["subscriptionType"] = f"object.{kind}"
            event["objectTypeId"] = type_.type_id
        else:
            event["subscriptionType"] = f"{type_.singular}.{kind}"
        if source == "CRM_UI":
            event["sourceId"] = "userId:882761034"
        event.update(fields)
        return event

    def _index(self, rec: Record, old_view) -> None:
        if self.index_lag_ms:
            if rec.index_until <= self.clock():  # keep the oldest not-yet-indexed view
                rec.indexed = old_view
            rec.index_until = self.clock() + self.index_lag_ms

    # ----- lookups -------------------------------------------------------------------------------
    def resolve(self, type_: ot.ObjectType, raw_id: str, id_property: str | None = None,
                archived: bool = False, follow_merges: bool = True) -> Record | None:
        table = self.records[type_.name]
        if id_property and id_property != "hs_object_id":
            if type_.name == "contacts" and id_property == "email":
                rid = self.emails.get(str(raw_id).lower())
                rec = table.get(rid) if rid is not None else None
            else:
                prop = self.property_defs(type_.name).get(id_property)
                if prop is None or not prop.unique:
                    raise validation(f"Property {id_property} is not a unique identifier for {type_.name}")
                rec = next((r for r in table.values() if r.props.get(id_property) == raw_id
                            and not r.archived and r.merged_into is None), None)
        else:
            if not _INT.match(str(raw_id)):
                return None
            rid = int(raw_id)
            if follow_merges and (type_.name, rid) in self.aliases:
                rid = self.aliases[(type_.name, rid)]
            rec = table.get(rid)
        if rec is None or rec.merged_into is not None:
            return None
        if rec.archived != archived:
            return None
        return rec

    def get(self, type_: ot.ObjectType, raw_id: str, id_property: str | None = None, archived: bool = False) -> Record:
        with self.lock:
            rec = self.resolve(type_, raw_id, id_property, archived)
            if rec is None:
                raise not_found(raw_id)
            return rec

    def page(self, type_: ot.ObjectType, after: int, limit: int, archived: bool = False):
        """Records in ascending id order from id >= after; returns (records, next_after or None)."""
        with self.lock:
            ids = self._ids[type_.name]
            table = self.records[type_.name]
            out = []
            i = bisect.bisect_left(ids, after)
            n = len(ids)
            while i < n:
                rec = table[ids[i]]
                i += 1
                if rec.archived == archived and rec.merged_into is None:
                    if len(out) == limit:
                        return out, rec.id
                    out.append(rec)
            return out, None

    # ----- validation ----------------------------------------------------------------------------
    def _clean(self, type_: ot.ObjectType, props, creating: bool) -> dict[str, str]:
        if not isinstance(props, dict):
            raise validation("Invalid input JSON: properties must be an object")
        defs = self.property_defs(type_.name)
        problems, out = [], {}
        for name, value in props.items():
            d = defs.get(name)
            if d is None:
                problems.append((name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
                continue
            if d.read_only:
                problems.append((name, "READ_ONLY_VALUE", f'"{name}" is a read only property; its value cannot be set.'))
                continue
            if value is None or value == "":
                out[name] = ""
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, (int, float)) and d.type != "datetime":
                value = str(value)
            if isinstance(value, (dict, list)):
                problems.append((name, "INVALID_PROPERTY_VALUE", f"{value!r} is not a valid value for {name}"))
                continue
            if d.type == "number":
                try:
                    float(value)
                except ValueError:
                    problems.append((name, "INVALID_DECIMAL", f"{value} was not a valid number."))
                    continue
                out[name] = str(value)
            elif d.type in ("datetime", "date"):
                ms = parse_time(value)
                if ms is None:
                    problems.append((name, "INVALID_DATE", f"{value} was not a valid long."))
                    continue
                out[name] = iso(ms)
            elif d.type == "enumeration" and d.options and d.field_type != "checkbox":
                if value not in d.options:
                    problems.append((name, "INVALID_OPTION",
                                     f"{value} was not one of the allowed options: {list(d.options)}"))
                    continue
                out[name] = value
            else:
                if name == "email" and not _EMAIL.match(str(value)):
                    problems.append((name, "INVALID_EMAIL", f"Email address {value} is invalid"))
                    continue
                out[name] = str(value)
        if type_.name == "deals" and "pipeline" in out and out["pipeline"] not in ot.PIPELINES:
            problems.append(("pipeline", "INVALID_OPTION", f"{out['pipeline']} is not a valid pipeline"))
        if type_.name == "deals" and out.get("dealstage"):
            stages = {s.id for _, st in ot.PIPELINES.values() for s in st}
            if out["dealstage"] not in stages:
                problems.append(("dealstage", "INVALID_OPTION", f"{out['dealstage']} is not a valid deal stage"))
        if creating:
            for req in type_.required:
                names = req.split("|")
                if not any(out.get(n) for n in names):
                    problems.append((names[0], "REQUIRED_PROPERTY", f"{' or '.join(names)} is required"))
        if problems:
            raise property_errors(problems)
        return out

    def _check_email(self, rec_id: int | None, email: str | None) -> None:
        if not email:
            return
        existing = self.emails.get(email.lower())
        if existing is not None and existing != rec_id:
            raise ApiError(409, "CONFLICT", f"Contact already exists. Existing ID: {existing}")

    # ----- writes --------------------------------------------------------------------------------
    def create(self, type_: ot.ObjectType, props: dict, associations=None, source: str = "API",
               at_ms: int | None = None, emit: bool = True, record_id: int | None = None,
               validate: bool = True) -> Record:
        with self.lock:
            clean = self._clean(type_, props, creating=True) if validate else dict(props)
            self.generation += 1
            if type_.name == "contacts":
                self._check_email(None, clean.get("email"))
            assoc_links = self._parse_inline_assocs(type_, associations or [])
            ms = at_ms if at_ms is not None else self.clock()
            rid = record_id if record_id is not None else self._new_id()
            if record_id is not None:
                self.next_id = max(self.next_id, record_id + 1)
            values = {k: v for k, v in clean.items() if v != ""}
            values[type_.created_prop] = iso(ms)
            values["hs_object_id"] = str(rid)
            values["hs_object_source"] = "API" if source == "API" else "CRM_UI"
            values["hs_object_source_label"] = "INTEGRATION" if source == "API" else "CRM_UI"
            rec = Record(type_, rid, values, ms, ms)
            rec.touch(ms)
            self.records[type_.name][rid] = rec
            ids = self._ids[type_.name]
            if not ids or ids[-1] < rid:
                ids.append(rid)
            else:
                bisect.insort(ids, rid)
            if type_.name == "contacts" and values.get("email"):
                self.emails[values["email"].lower()] = rid
            self._index(rec, None)
            events = [self.change_event(type_, "creation", rid, source, changeFlag="NEW")] if emit else []
            for to_type, to_id, type_id in assoc_links:
                events += self._associate(type_, rid, to_type, to_id, type_id, source, emit)
            self._emit(events)
            return rec

    def _parse_inline_assocs(self, type_: ot.ObjectType, associations) -> list:
        links = []
        for a in associations:
            try:
                to_id = int(a["to"]["id"])
                specs = a["types"]
            except (KeyError, TypeError, ValueError):
                raise validation("Invalid association input: expected {to: {id}, types: [...]}") from None
            for spec in specs:
                type_id = spec.get("associationTypeId") if isinstance(spec, dict) else None
                info = ot.TYPE_IDS.get(type_id)
                if info is None or info[0] != type_.name:
                    raise validation(f"{type_id} is not a valid association type id for {type_.name}")
                to_type = ot.TYPES[info[1]]
                if self.resolve(to_type, str(to_id)) is None:
                    raise validation(f"Association target {to_type.singular} {to_id} does not exist",
                                     context={"id": [str(to_id)]})
                links.append((to_type, to_id, type_id))
        return links

    def update(self, type_: ot.ObjectType, raw_id: str, props: dict, id_property: str | None = None,
               source: str = "API", follow_merges: bool = True, at_ms: int | None = None) -> Record:
        with self.lock:
            rec = self.resolve(type_, raw_id, id_property, follow_merges=follow_merges)
            if rec is None:
                raise not_found(raw_id)
            clean = self._clean(type_, props, creating=False)
            return self._apply(rec, clean, source, at_ms)

    def _apply(self, rec: Record, clean: dict, source: str, at_ms: int | None = None) -> Record:
        type_ = rec.type
        if type_.name == "contacts" and "email" in clean:
            self._check_email(rec.id, clean["email"])
        changed = {k: v for k, v in clean.items() if rec.props.get(k, "") != v}
        self.generation += 1
        old_view = (dict(rec.props), rec.created, rec.updated)
        if type_.name == "contacts" and "email" in changed:
            old = rec.props.get("email")
            if old:
                self.emails.pop(old.lower(), None)
            if changed["email"]:
                self.emails[changed["email"].lower()] = rec.id
        for k, v in changed.items():
            if v == "":
                rec.props.pop(k, None)
            else:
                rec.props[k] = v
        rec.touch(at_ms if at_ms is not None else self.clock())  # HubSpot bumps lastmodified on every write
        self._index(rec, old_view)
        self._emit([self.change_event(type_, "propertyChange", rec.id, source, propertyName=k,
                                      propertyValue=v) for k, v in changed.items()])
        return rec

    def archive(self, type_: ot.ObjectType, raw_id: str, source: str = "API") -> bool:
        with self.lock:
            rec = self.resolve(type_, raw_id)
            if rec is None:
                return False
            self.generation += 1
            rec.archived = True
            rec.archived_at = self.clock()
            rec.cache = {}
            if type_.name == "contacts":
                # Its own addresses only (primary and additional): scanning every email of the portal
                # made archiving 100,000 contacts of a 200,000-contact portal take hours.
                extra = (rec.props.get("hs_additional_emails") or "").split(";")
                for email in (rec.props.get("email"), *extra):
                    if email and self.emails.get(email.lower()) == rec.id:
                        del self.emails[email.lower()]
            self._emit([self.change_event(type_, "deletion", rec.id, source)])
            return True

    def merge(self, type_: ot.ObjectType, primary_raw: str, loser_raw: str, source: str = "API") -> Record:
        with self.lock:
            primary = self.resolve(type_, primary_raw)
            loser = self.resolve(type_, loser_raw)
            if primary is None or loser is None:
                raise not_found(primary_raw if primary is None else loser_raw)
            if primary.id == loser.id:
                raise validation("Cannot merge an object with itself")
            self.generation += 1
            old_view = (dict(primary.props), primary.created, primary.updated)
            moved = 0
            for k, v in loser.props.items():  # the primary's values win; empty ones are filled in
                if k not in SYSTEM_PROPS and k not in primary.props and k not in ("email", "hs_merged_object_ids",
                                                                                   "hs_additional_emails"):
                    primary.props[k] = v
                    moved += 1
            merged = [x for x in primary.props.get("hs_merged_object_ids", "").split(";") if x]
            merged += [x for x in loser.props.get("hs_merged_object_ids", "").split(";") if x] + [str(loser.id)]
            primary.props["hs_merged_object_ids"] = ";".join(merged)
            if type_.name == "contacts":
                extra = [x for x in primary.props.get("hs_additional_emails", "").split(";") if x]
                for e in [loser.props.get("email"), *loser.props.get("hs_additional_emails", "").split(";")]:
                    if e and e not in extra and e != primary.props.get("email"):
                        extra.append(e)
                        self.emails[e.lower()] = primary.id
                if extra:
                    primary.props["hs_additional_emails"] = ";".join(extra)
            loser.merged_into = primary.id
            loser.cache = {}
            for alias, target in list(self.aliases.items()):
                if alias[0] == type_.name and target == loser.id:
                    self.aliases[alias] = primary.id
            self.aliases[(type_.name, loser.id)] = primary.id
            # associations move to the survivor
            for to_name, targets in list(self.assoc.get((type_.name, loser.id), {}).items()):
                for to_id, type_ids in list(targets.items()):
                    for tid in type_ids:
                        self._link(type_.name, primary.id, to_name, to_id, tid)
                    self._unlink(type_.name, loser.id, to_name, to_id)
            primary.touch(self.clock())
            self._index(primary, old_view)
            self._emit([
                self.change_event(type_, "merge", primary.id, source, primaryObjectId=primary.id,
                                  mergedObjectIds=[loser.id], newObjectId=primary.id,
                                  numberOfPropertiesMoved=moved),
                self.change_event(type_, "deletion", loser.id, source),
            ])
            return primary

    # ----- associations --------------------------------------------------------------------------
    def _link(self, from_name: str, from_id: int, to_name: str, to_id: int, type_id: int) -> bool:
        bucket = self.assoc.setdefault((from_name, from_id), {}).setdefault(to_name, {}).setdefault(to_id, set())
        if type_id in bucket:
            return False
        bucket.add(type_id)
        self.generation += 1
        rec = self.records[from_name].get(from_id)
        if rec is not None:
            rec.cache = {}
        return True

    def _unlink(self, from_name: str, from_id: int, to_name: str, to_id: int) -> None:
        targets = self.assoc.get((from_name, from_id), {}).get(to_name)
        self.generation += 1
        if targets is not None:
            targets.pop(to_id, None)

    def _associate(self, from_type: ot.ObjectType, from_id: int, to_type: ot.ObjectType, to_id: int,
                   type_id: int, source: str, emit: bool = True) -> list[dict]:
        """Link both directions; a primary type also adds the unlabeled one (§5.2). Returns events."""
        pair = ot.ASSOC.get((from_type.name, to_type.name))
        back = ot.ASSOC.get((to_type.name, from_type.name))
        if pair is None or back is None:
            raise validation(f"{from_type.singular} to {to_type.singular} associations are not supported")
        primary = pair.primary is not None and type_id == pair.primary
        added = self._link(from_type.name, from_id, to_type.name, to_id, type_id)
        self._link(to_type.name, to_id, from_type.name, from_id, back.primary if primary else back.unlabeled)
        if primary:
            self._link(from_type.name, from_id, to_type.name, to_id, pair.unlabeled)
            self._link(to_type.name, to_id, from_type.name, from_id, back.unlabeled)
        if not (added and emit):
            return []
        return self._assoc_events(from_type, from_id, to_type, to_id, removed=False, primary=primary)

    def _assoc_events(self, from_type, from_id, to_type, to_id, removed: bool, primary: bool) -> list[dict]:
        events = []
        for a, aid, b, bid in ((from_type, from_id, to_type, to_id), (to_type, to_id, from_type, from_id)):
            events.append(self.change_event(
                a, "associationChange", aid, "API",
                associationType=f"{a.singular}_TO_{b.singular}".upper(), fromObjectId=aid, toObjectId=bid,
                associationRemoved=removed, isPrimaryAssociation=primary))
        return events

    def associate(self, from_type, from_raw: str, to_type, to_raw: str, type_ids: list[int] | None,
                  source: str = "API") -> tuple[Record, Record]:
        with self.lock:
            a = self.resolve(from_type, from_raw)
            b = self.resolve(to_type, to_raw)
            if a is None or b is None:
                raise not_found(from_raw if a is None else to_raw)
            pair = ot.ASSOC.get((from_type.name, to_type.name))
            if pair is None:
                raise validation(f"{from_type.singular} to {to_type.singular} associations are not supported")
            events = []
            for tid in type_ids or [pair.unlabeled]:
                if tid not in (pair.unlabeled, pair.primary):
                    raise validation(f"{tid} is not a valid association type between {from_type.name} and "
                                     f"{to_type.name}")
                events += self._associate(from_type, a.id, to_type, b.id, tid, source)
            self._emit(events)
            return a, b

    def dissociate(self, from_type, from_raw: str, to_type, to_raw: str, source: str = "API") -> None:
        with self.lock:
            a = self.resolve(from_type, from_raw)
            b = self.resolve(to_type, to_raw)
            if a is None or b is None:
                raise not_found(from_raw if a is None else to_raw)
            had = b.id in self.assoc.get((from_type.name, a.id), {}).get(to_type.name, {})
            self._unlink(from_type.name, a.id, to_type.name, b.id)
            self._unlink(to_type.name, b.id, from_type.name, a.id)
            a.cache = {}
            b.cache = {}
            if had:
                self._emit(self._assoc_events(from_type, a.id, to_type, b.id, removed=True, primary=False))

    def associations_of(self, type_name: str, rec_id: int, to_name: str) -> dict[int, set[int]]:
        targets = self.assoc.get((type_name, rec_id), {}).get(to_name, {})
        table = self.records[to_name]
        return {tid: types for tid, types in targets.items()
                if tid in table and not table[tid].archived and table[tid].merged_into is None and types}

    # ----- search --------------------------------------------------------------------------------
    def search(self, type_: ot.ObjectType, body: dict) -> tuple[int, list[tuple[Record, dict, int, int]], int | None]:
        groups = body.get("filterGroups") or []
        if not isinstance(groups, list):
            raise validation("filterGroups must be a list")
        if len(groups) > 5:
            raise validation(f"Too many filter groups ({len(groups)}). The maximum number of filter groups is 5.")
        total_filters = 0
        for g in groups:
            fl = (g or {}).get("filters") or []
            total_filters += len(fl)
            if len(fl) > 6:
                raise validation(f"Too many filters in a group ({len(fl)}). The maximum is 6.")
        if total_filters > 18:
            raise validation(f"Too many filters ({total_filters}). The maximum number of filters is 18.")
        try:
            limit = int(body.get("limit", 10) if body.get("limit") is not None else 10)
            after = int(body.get("after") or 0)
        except (TypeError, ValueError):
            raise validation("after and limit must be integers") from None
        if limit < 1 or limit > 200:
            raise validation(f"limit must be between 1 and 200, got {limit}")
        end = after + limit if self.search_cap_mode == "after+limit" else after + 1
        if end > 10000:
            raise ApiError(400, "VALIDATION_ERROR",
                           "There was a problem with the request. Paging past 10,000 results is not supported; "
                           "narrow the filters (e.g. hs_object_id GT <last id>)", context={"after": [str(after)]})
        query = body.get("query")
        if query is not None and len(str(query)) > 3000:
            raise validation("query is longer than 3000 characters")
        compiled = [[self._compile_filter(type_, f) for f in (g or {}).get("filters") or []] for g in groups]
        sort_key = self._compile_sort(type_, body.get("sorts") or [])
        now = self.clock()
        matches = []
        with self.lock:
            for rec in self.records[type_.name].values():
                if rec.archived or rec.merged_into is not None:
                    continue
                if rec.index_until > now:
                    if rec.indexed is None:
                        continue
                    props, created, updated = rec.indexed
                else:
                    props, created, updated = rec.props, rec.created, rec.updated
                if compiled and not any(all(f(rec, props) for f in g) for g in compiled):
                    continue
                if query and not self._query_match(type_, props, str(query)):
                    continue
                matches.append((rec, props, created, updated))
        if sort_key is not None:
            key, reverse = sort_key
            present = [m for m in matches if key(m) is not None]
            missing = [m for m in matches if key(m) is None]
            present.sort(key=key, reverse=reverse)
            matches = present + missing
        else:
            matches.sort(key=lambda m: (m[2], m[0].id))  # creation order, oldest first
        page = matches[after:after + limit]
        nxt = after + limit if after + limit < len(matches) else None
        return len(matches), page, nxt

    @staticmethod
    def _query_match(type_: ot.ObjectType, props: dict, query: str) -> bool:
        q = query.lower().strip()
        return any(q in props.get(p, "").lower() for p in type_.text_props)

    def _value_getter(self, type_: ot.ObjectType, name: str):
        """(getter(rec, props) -> comparable or None, kind)."""
        if name == "hs_object_id":
            return (lambda rec, props: rec.id), "number"
        d = self.property_defs(type_.name).get(name)
        if d is None:
            raise validation(f"Unable to find property {name} for {type_.name}",
                             errors=[{"message": f'Property "{name}" does not exist', "code": "PROPERTY_DOESNT_EXIST"}])
        if d.type in ("datetime", "date"):
            def get_time(rec, props, _n=name):
                v = props.get(_n)
                return parse_time(v) if v else None
            return get_time, "time"
        if d.type == "number":
            def get_num(rec, props, _n=name):
                v = props.get(_n)
                try:
                    return float(v) if v not in (None, "") else None
                except ValueError:
                    return None
            return get_num, "number"
        if d.type == "enumeration":
            return (lambda rec, props, _n=name: props.get(_n) or None), "enum"
        return (lambda rec, props, _n=name: props.get(_n) or None), "string"

    def _coerce(self, kind: str, value, prop: str):
        if value is None:
            raise validation(f"Filter on {prop} needs a value")
        s = str(value)
        if kind == "time":
            if not _INT.match(s.strip()):
                # real HubSpot: date strings give this generic 400 (§4)
                raise validation("There was a problem with the request.", context={"propertyName": [prop]})
            return int(s)
        if kind == "number":
            try:
                return float(s)
            except ValueError:
                raise validation(f"{s} is not a valid number for {prop}") from None
        return s if kind == "enum" else s.lower()

    def _compile_filter(self, type_: ot.ObjectType, f: dict):
        if not isinstance(f, dict) or "propertyName" not in f or "operator" not in f:
            raise validation("Each filter needs propertyName and operator")
        name, op = f["propertyName"], f["operator"]
        if name.startswith("associations."):
            to = ot.lookup(name.split(".", 1)[1])
            if to is None or op != "EQ":
                raise validation(f"Unsupported association filter {name} {op}")
            target = int(f.get("value") or 0)
            return lambda rec, props: target in self.assoc.get((type_.name, rec.id), {}).get(to.name, {})
        get, kind = self._value_getter(type_, name)

        def norm(v):
            if v is None:
                return None
            return v.lower() if kind == "string" else v

        if op == "HAS_PROPERTY":
            return lambda rec, props: get(rec, props) is not None
        if op == "NOT_HAS_PROPERTY":
            return lambda rec, props: get(rec, props) is None
        if op in ("EQ", "NEQ", "LT", "LTE", "GT", "GTE"):
            target = self._coerce(kind, f.get("value"), name)
            cmp = {"EQ": lambda a: a == target, "NEQ": lambda a: a != target, "LT": lambda a: a < target,
                   "LTE": lambda a: a <= target, "GT": lambda a: a > target, "GTE": lambda a: a >= target}[op]
            if op == "NEQ":
                return lambda rec, props: (v := norm(get(rec, props))) is None or cmp(v)
            return lambda rec, props: (v := norm(get(rec, props))) is not None and cmp(v)
        if op == "BETWEEN":
            lo = self._coerce(kind, f.get("value"), name)
            hi = self._coerce(kind, f.get("highValue"), name)
            return lambda rec, props: (v := norm(get(rec, props))) is not None and lo <= v <= hi
        if op in ("IN", "NOT_IN"):
            values = f.get("values")
            if not isinstance(values, list):
                raise validation(f"{op} needs a values list")
            # strings compare case-insensitively only if the caller sent lowercase values (§4)
            targets = {self._coerce(kind, v, name) if kind != "string" else str(v) for v in values}
            if op == "IN":
                return lambda rec, props: (v := norm(get(rec, props))) is not None and v in targets
            return lambda rec, props: (v := norm(get(rec, props))) is None or v not in targets
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            token = str(f.get("value") or "").lower()

            def contains(rec, props):
                v = get(rec, props)
                if v is None:
                    return False
                v = str(v).lower()
                if "*" in token:
                    return fnmatch.fnmatchcase(v, token) or any(fnmatch.fnmatchcase(w, token) for w in v.split())
                return token in re.split(r"[\s@.,;]+", v) or token == v
            if op == "CONTAINS_TOKEN":
                return contains
            return lambda rec, props: not contains(rec, props)
        raise validation(f"Unknown operator {op}")

    def _compile_sort(self, type_: ot.ObjectType, sorts):
        if not sorts:
            return None
        s = sorts[0]  # HubSpot honours one sort rule only
        if isinstance(s, str):
            desc = s.startswith("-")
            name = s.lstrip("-")
        elif isinstance(s, dict) and s.get("propertyName"):
            name = s["propertyName"]
            desc = str(s.get("direction", "ASCENDING")).upper() == "DESCENDING"
        else:
            raise validation("Invalid sort")
        get, kind = self._value_getter(type_, name)

        def key(m, _get=get, _kind=kind):
            v = _get(m[0], m[1])
            if v is None:
                return None
            return (v.lower() if _kind == "string" else v, m[0].id)
        return key, desc
