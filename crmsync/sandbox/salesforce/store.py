"""The org's data: records of the six sObjects (Note among them), the delete log, the Recycle Bin, and the clock.

Behaviour followed (REST API Developer Guide, https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/):
* a delete moves the record to the Recycle Bin: ``IsDeleted`` true, visible to ``queryAll`` only,
  and listed by ``sobjects/{type}/deleted`` (resources_getdeleted.htm) for 15 days, or less when
  the log is purged early (``purge_delete_log``: the fault knob that moves ``earliestDateAvailable``
  forward and empties the bin);
* every write sets ``SystemModstamp`` and ``LastModifiedDate``; ``late_commit_seconds`` stamps a
  write that far in the past, as a long transaction does whose rows commit after a reader's cursor
  already passed their stamp (the "rows committing late below the cursor" fault);
* derived fields: Opportunity ``IsClosed``/``IsWon`` and a default ``Probability`` from the stage,
  Task ``IsClosed`` from its status, Task/Event ``AccountId`` from WhatId/WhoId, Event
  ``ActivityDateTime``/``EndDateTime`` from its start and duration.
"""
from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta

from .errors import ApiError
from .schema import OBJECT_BY_PREFIX, OBJECTS, STAGE_PROBABILITY
from .values import FieldProblem, coerce, make_id, normalize_id

DELETE_LOG_DAYS = 15
SYSTEM_FIELDS = ("Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp")


class Clock:
    """Wall time plus an offset the admin API can move forward."""

    def __init__(self):
        self.offset = 0.0

    def now(self) -> datetime:
        t = datetime.fromtimestamp(time.time() + self.offset, UTC)
        return t.replace(microsecond=t.microsecond // 1000 * 1000)


class OrgState:
    def __init__(self, org_id: str):
        self.org_id = org_id
        self.lock = threading.RLock()
        self.clock = Clock()
        self.listeners: list = []          # callables(object name, record id, action)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.records: dict[str, dict[str, dict]] = {name: {} for name in OBJECTS}
            self._seq = itertools.count(1)
            self.delete_log: list[tuple[str, str, datetime]] = []   # (object, id, deletedDate)
            self.log_floor: datetime | None = None                 # earliestDateAvailable after a purge
            self.late_commit_seconds = 0.0
            self.clock.offset = 0.0

    # ----- reading -----------------------------------------------------------------------------
    def object_of(self, record_id: str) -> str | None:
        """The object of a live record id (None when there is none)."""
        name = OBJECT_BY_PREFIX.get(record_id[:3])
        if name is None:
            return None
        rec = self.records[name].get(record_id)
        return name if rec is not None and not rec["IsDeleted"] else None

    def get(self, obj: str, record_id: str, *, include_deleted: bool = False) -> dict:
        rid = normalize_id(record_id)
        rec = self.records[obj].get(rid) if rid else None
        if rec is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if rec["IsDeleted"] and not include_deleted:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        return rec

    def find_by(self, obj: str, field: str, value) -> list[dict]:
        return [r for r in self.records[obj].values() if not r["IsDeleted"] and r.get(field) == value]

    def counts(self) -> dict:
        with self.lock:
            return {name: sum(1 for r in rows.values() if not r["IsDeleted"]) for name, rows in self.records.items()}

    def earliest_delete_available(self) -> datetime:
        floor = self.clock.now() - timedelta(days=DELETE_LOG_DAYS)
        return max(floor, self.log_floor) if self.log_floor else floor

    # ----- writing -----------------------------------------------------------------------------
    def _stamp(self, modstamp: datetime | None) -> datetime:
        if modstamp is not None:
            return modstamp
        return self.clock.now() - timedelta(seconds=self.late_commit_seconds)

    def _values(self, obj: str, body: dict, *, creating: bool) -> dict:
        """Checked, coerced field values of a write; raises FieldProblem for the first bad field."""
        meta = OBJECTS[obj]
        out = {}
        for name, value in body.items():
            if name == "attributes":
                continue
            f = meta.field(name)
            if f is None:
                raise FieldProblem("INVALID_FIELD", f"No such column '{name}' on sobject of type {obj}", [name])
            if not (f.createable if creating else f.updateable):
                raise FieldProblem("INVALID_FIELD_FOR_INSERT_UPDATE",
                                   f"Unable to create/update fields: {f.name}. Please check the security settings "
                                   "of this field and verify that it is read/write for your profile or permission set.",
                                   [f.name])
            out[f.name] = coerce(f, value, self.object_of)
        if creating:
            for f in meta.fields:
                if f.name in out or not f.createable:
                    continue
                if f.default is not None:
                    out[f.name] = f.default
                elif not f.nillable:
                    raise FieldProblem("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{f.name}]", [f.name])
            if obj == "Event" and out.get("DurationInMinutes") is None and out.get("EndDateTime") is None:
                out["DurationInMinutes"] = 0
        for name, value in out.items():
            if value is None and not meta.field(name).nillable:
                raise FieldProblem("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", [name])
        return out

    def _derive(self, obj: str, rec: dict, changed: dict) -> None:
        if obj == "Contact":
            rec["Name"] = " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p)
        if obj == "Opportunity":
            stage = rec.get("StageName")
            rec["IsClosed"] = stage in ("Closed Won", "Closed Lost")
            rec["IsWon"] = stage == "Closed Won"
            if "StageName" in changed and "Probability" not in changed:
                rec["Probability"] = float(STAGE_PROBABILITY.get(stage, 0))
        if obj == "Task":
            rec["IsClosed"] = rec.get("Status") == "Completed"
        if obj in ("Task", "Event"):
            account = None
            what, who = rec.get("WhatId"), rec.get("WhoId")
            if what and what.startswith("001"):
                account = what
            elif what and what.startswith("006"):
                account = self.records["Opportunity"].get(what, {}).get("AccountId")
            elif who and who.startswith("003"):
                account = self.records["Contact"].get(who, {}).get("AccountId")
            rec["AccountId"] = account
        if obj == "Event":
            start = rec.get("StartDateTime")
            rec["ActivityDateTime"] = start
            if start is not None:
                if "EndDateTime" in changed and "DurationInMinutes" not in changed and rec.get("EndDateTime"):
                    rec["DurationInMinutes"] = int((rec["EndDateTime"] - start).total_seconds() // 60)
                else:
                    rec["EndDateTime"] = start + timedelta(minutes=rec.get("DurationInMinutes") or 0)

    def create(self, obj: str, body: dict, *, modstamp: datetime | None = None, notify: bool = True) -> dict:
        with self.lock:
            values = self._values(obj, body, creating=True)
            now = self._stamp(modstamp)
            rid = make_id(OBJECTS[obj].key_prefix, next(self._seq))
            rec = {f.name: None for f in OBJECTS[obj].fields}
            rec.update(values, Id=rid, IsDeleted=False, CreatedDate=now, LastModifiedDate=now, SystemModstamp=now)
            self._derive(obj, rec, values)
            self.records[obj][rid] = rec
        if notify:
            self._notify(obj, rid, "created")
        return rec

    def update(self, obj: str, record_id: str, body: dict, *, modstamp: datetime | None = None) -> dict:
        with self.lock:
            rec = self.get(obj, record_id)
            values = self._values(obj, body, creating=False)
            now = self._stamp(modstamp)
            rec.update(values, LastModifiedDate=now, SystemModstamp=now)
            self._derive(obj, rec, values)
        self._notify(obj, rec["Id"], "updated")
        return rec

    def delete(self, obj: str, record_id: str) -> dict:
        with self.lock:
            rec = self.get(obj, record_id)
            now = self.clock.now()
            rec.update(IsDeleted=True, SystemModstamp=now)
            self.delete_log.append((obj, rec["Id"], now))
        self._notify(obj, rec["Id"], "deleted")
        return rec

    def upsert(self, obj: str, field_name: str, value: str, body: dict) -> tuple[dict, bool]:
        """(record, created) of an upsert by an external id field ("Upsert a Record Using an
        External ID", https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_upsert.htm)."""
        meta = OBJECTS[obj]
        f = meta.field(field_name)
        if f is None or not (f.external_id or f.name == "Id"):
            raise ApiError(404, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: "
                           + field_name)
        given = next((v for k, v in body.items() if k.lower() == f.name.lower()), None)
        if given is not None and str(given) != value:
            raise ApiError(400, "INVALID_FIELD", f"The value of the external ID field {f.name} in the body does not "
                           "match the value in the URL", [f.name])
        body = {k: v for k, v in body.items() if k.lower() != f.name.lower()}
        with self.lock:
            matches = [self.get(obj, value)] if f.name == "Id" else self.find_by(obj, f.name, value)
            if len(matches) > 1:
                raise ApiError(300, "MULTIPLE_CHOICES", "Multiple records match",
                               body=[f"/services/data/v62.0/sobjects/{obj}/{m['Id']}" for m in matches])
            if matches:
                return self.update(obj, matches[0]["Id"], body), False
            return self.create(obj, {**body, f.name: value}), True

    def set_modstamp(self, obj: str, record_id: str, when: datetime) -> dict:
        """Rewrite a record's SystemModstamp (and LastModifiedDate) without a change event."""
        with self.lock:
            rec = self.get(obj, record_id, include_deleted=True)
            rec["SystemModstamp"] = rec["LastModifiedDate"] = when
            rec["CreatedDate"] = min(rec["CreatedDate"], when)
            return rec

    def purge_delete_log(self, before: datetime | None = None) -> int:
        """Empty the Recycle Bin and the delete log of deletions up to ``before`` (default now):
        ``earliestDateAvailable`` moves there. Returns how many records were purged for good."""
        with self.lock:
            cut = before or self.clock.now()
            gone = [(o, i) for o, i, when in self.delete_log if when <= cut]
            self.delete_log = [e for e in self.delete_log if e[2] > cut]
            for obj, rid in gone:
                self.records[obj].pop(rid, None)
            self.log_floor = max(cut, self.log_floor) if self.log_floor else cut
            return len(gone)

    def _notify(self, obj: str, rid: str, action: str) -> None:
        for listener in list(self.listeners):
            listener(obj, rid, action)
