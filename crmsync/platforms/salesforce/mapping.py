"""Salesforce sObjects <-> crmsync's unified entities.

    contact  <-> Contact       company <-> Account      deal <-> Opportunity
    task     <-> Task (not a call or an email)
    activity <-> Event (a meeting), Task whose TaskSubtype or Type is Call (a logged call) or
                 Email (a logged email), and the classic Note (a note)

A Note ("Salesforce Object Reference: Note") hangs on exactly one record, `ParentId` (required on
create, not updateable): a contact, an account or an opportunity here. It maps to the one
association of that kind, and a local note with several is written to its contact, else its deal,
else its company. `Title` (required, 80 characters) is the subject; a note without one is titled by
the first line of its body (`note_title`), and a Title that equals that derived title reads back as
no subject, so a note written without a subject comes back as it went. `occurred_at` is the Note's
`CreatedDate`, read only.

Field types follow the describe ("sObject Describe", resources_sobject_describe.htm): date fields
(`CloseDate`, `ActivityDate`) hold a day, read as midnight UTC; datetimes are ISO 8601 with a
`+0000` offset; multi-select picklists are one string joined by `;` and become lists; custom
fields (`__c`) go to `custom_fields` by API name. Deal `status` is read from `IsClosed`/`IsWon`
(derived from the stage in Salesforce, so never written); the stage itself is `StageName`, and the
config's value mappings ("deal.stage") translate stage names between CRMs.

`field_mappings` ({unified field or "entity.field": Salesforce field API name}) replaces a
default or maps a field the defaults leave out, e.g. {"contact.lead_status": "Lead_Status__c"}.
Record ids are 18 characters; their 3-character key prefix names the object, which is how Task/Event
references (`WhoId`, `WhatId`) are told apart.
"""
from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from crmsync.entities import SCHEMAS
from crmsync.errors import SkipRecord

OBJECTS: dict[str, tuple[str, ...]] = {"contact": ("Contact",), "company": ("Account",), "deal": ("Opportunity",),
                                       "task": ("Task",), "activity": ("Event", "Task", "Note")}
OBJECT_BY_PREFIX = {"003": "Contact", "001": "Account", "006": "Opportunity", "00T": "Task", "00U": "Event",
                    "002": "Note"}
MARKER_FIELD = "crmsync_id__c"   # an External ID field holding the local id, when the org has it
SYSTEM_FIELDS = ("Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp", "OwnerId")
# A Task is a logged call or email when either picklist says so (TaskSubtype is set on create only).
TASK_ACTIVITY_TYPES = {"Call": "call", "Email": "email"}     # Task subtype -> unified activity type
CALL_CONDITION = "(TaskSubtype IN ('Call', 'Email') OR Type IN ('Call', 'Email'))"
NOT_CALL_CONDITION = "(TaskSubtype NOT IN ('Call', 'Email') AND Type NOT IN ('Call', 'Email'))"
# Note.ParentId by the kind of record it names, in the order a local note with several is placed.
NOTE_PARENTS = (("contact_id", "Contact"), ("deal_id", "Opportunity"), ("company_id", "Account"))
NOTE_TITLE_LENGTH = 80          # Note.Title holds 80 characters ("Salesforce Object Reference: Note")
UNTITLED_NOTE = "(untitled note)"

TEXT, NUMBER, INT, DATE, DATETIME, LIST = "text", "number", "int", "date", "datetime", "list"
FIELDS: dict[tuple[str, str], dict[str, tuple[str, str]]] = {
    ("contact", "Contact"): {
        "first_name": ("FirstName", TEXT), "last_name": ("LastName", TEXT), "email": ("Email", TEXT),
        "phone": ("Phone", TEXT), "job_title": ("Title", TEXT), "lead_source": ("LeadSource", TEXT),
        "notes": ("Description", TEXT), "city": ("MailingCity", TEXT), "country": ("MailingCountry", TEXT)},
    ("company", "Account"): {
        "name": ("Name", TEXT), "website": ("Website", TEXT), "phone": ("Phone", TEXT),
        "industry": ("Industry", TEXT), "employee_count": ("NumberOfEmployees", INT),
        "annual_revenue": ("AnnualRevenue", NUMBER), "description": ("Description", TEXT),
        "city": ("BillingCity", TEXT), "country": ("BillingCountry", TEXT)},
    ("deal", "Opportunity"): {
        "name": ("Name", TEXT), "amount": ("Amount", NUMBER), "stage": ("StageName", TEXT),
        "probability": ("Probability", NUMBER), "close_date": ("CloseDate", DATE),
        "description": ("Description", TEXT), "currency": ("CurrencyIsoCode", TEXT)},
    ("task", "Task"): {
        "title": ("Subject", TEXT), "body": ("Description", TEXT), "due_date": ("ActivityDate", DATE),
        "status": ("Status", TEXT), "priority": ("Priority", TEXT), "task_type": ("Type", TEXT)},
    ("activity", "Event"): {
        "subject": ("Subject", TEXT), "body": ("Description", TEXT), "occurred_at": ("StartDateTime", DATETIME),
        "duration_minutes": ("DurationInMinutes", INT)},
    ("activity", "Task"): {
        "subject": ("Subject", TEXT), "body": ("Description", TEXT), "occurred_at": ("ActivityDate", DATE),
        "outcome": ("CallDisposition", TEXT)},
    # CreatedDate is the system's: read, never written (the describe leaves it out of writes).
    ("activity", "Note"): {
        "subject": ("Title", TEXT), "body": ("Body", TEXT), "occurred_at": ("CreatedDate", DATETIME)},
}
ASSOCIATION_FIELDS = {"Contact": {"company_id": "AccountId"},
                      "Opportunity": {"company_id": "AccountId", "contact_id": "ContactId"}}
TASK_STATUS = {"not_started": "Not Started", "in_progress": "In Progress", "completed": "Completed",
               "waiting": "Waiting on someone else", "deferred": "Deferred"}
PRIORITY = {"high": "High", "medium": "Normal", "low": "Low"}
DIRECTION = {"inbound": "Inbound", "outbound": "Outbound", "internal": "Internal"}


class MappingError(SkipRecord, ValueError):
    """A unified record that cannot be written to Salesforce as it is (no object for its type, an
    update without an id): that record is skipped, the rest of the batch goes on."""


def object_of_id(record_id: str) -> str | None:
    return OBJECT_BY_PREFIX.get(str(record_id)[:3])


def task_activity_type(raw: Mapping) -> str | None:
    """"call" or "email" for a Task that logs one (an activity), None for a to-do (a task)."""
    return TASK_ACTIVITY_TYPES.get(raw.get("TaskSubtype")) or TASK_ACTIVITY_TYPES.get(raw.get("Type"))


def is_call(raw: Mapping) -> bool:
    """A Task that is an activity (a logged call or email), not a to-do."""
    return task_activity_type(raw) is not None


_TAG = re.compile(r"<[^>]*>")
_LINE_BREAK_TAG = re.compile(r"<\s*(?:br|/p|/div|/li|/h[1-6])\b[^>]*>", re.IGNORECASE)


def note_title(body: Any) -> str:
    """The Title of a note that has no subject: the first non-blank line of its body (HTML tags
    dropped, as HubSpot's note bodies are HTML), cut to the 80 characters Note.Title holds."""
    text = html.unescape(_TAG.sub("", _LINE_BREAK_TAG.sub("\n", str(body or ""))))
    first = next((" ".join(line.split()) for line in text.splitlines() if line.strip()), "")
    return first[:NOTE_TITLE_LENGTH] or UNTITLED_NOTE


def note_parent(associations: Mapping[str, str | None]) -> str | None:
    """The record a note is written to: its contact, else its deal, else its company."""
    return next((associations[name] for name, _ in NOTE_PARENTS if associations.get(name)), None)


def field_table(entity: str, obj: str, field_mappings: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """The effective {unified field: (Salesforce field, kind)}: the defaults, overridden by the
    config's field_mappings (an "entity.field" key wins over a bare "field")."""
    table = dict(FIELDS[(entity, obj)])
    known = set(SCHEMAS[entity]().fields) - {"id", "tenant_id", "custom_fields", "created_at", "updated_at",
                                              "deleted_at", "type"}
    for key, remote in (field_mappings or {}).items():
        qualifier, _, name = key.rpartition(".")
        if qualifier and qualifier != entity:
            continue
        if not qualifier and f"{entity}.{name}" in (field_mappings or {}):
            continue
        if name in table:
            table[name] = (remote, table[name][1])
        elif name in known:
            table[name] = (remote, TEXT)
    return table


def read_fields(entity: str, obj: str, describe: Mapping[str, dict], field_mappings=None) -> list[str]:
    """The fields a read asks for: mapped ones the org has, system fields, references, custom fields."""
    wanted = {remote for remote, _ in field_table(entity, obj, field_mappings).values()}
    wanted |= set(SYSTEM_FIELDS) | {"AccountId", "ContactId", "WhoId", "WhatId", "IsClosed", "IsWon", "TaskSubtype",
                                    "Type", "CallDurationInSeconds", "CallType", "ParentId"}
    wanted |= {name for name, d in describe.items() if d.get("custom")}
    return sorted(w for w in wanted if w in describe) if describe else sorted(wanted)


# Bulk API 2.0 CSV text -> the JSON value the REST API gives, by describe type; other types stay text.
_FROM_CSV: dict[str, Callable[[str], Any]] = {"boolean": lambda text: text == "true",
                                               "int": lambda text: int(float(text)),
                                               "double": float, "currency": float, "percent": float}


def bulk_csv_reader(obj: str, describe: Mapping[str, dict]) -> Callable[[Mapping[str, str]], dict[str, Any]]:
    """Reads Bulk API 2.0 result rows of `obj` (every value text, '' for null) as the REST API gives
    the record: booleans, numbers and null typed by the field's describe, looked up once for a page
    of rows rather than per value."""
    convert = {name: _FROM_CSV.get(d.get("type")) for name, d in describe.items()}

    def read(row: Mapping[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": {"type": obj}}
        for name, text in row.items():
            to_json = convert.get(name)
            out[name] = None if text == "" or text is None else to_json(text) if to_json else text
        return out
    return read


def _kind_of(describe: Mapping[str, dict], remote: str, kind: str) -> str:
    t = (describe.get(remote) or {}).get("type")
    return {"date": DATE, "datetime": DATETIME, "multipicklist": LIST, "int": INT, "double": NUMBER,
            "currency": NUMBER, "percent": NUMBER}.get(t, kind) if t else kind


def parse_datetime(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    text = str(value).replace("Z", "+00:00")
    if len(text) >= 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]          # +0000 -> +00:00
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def soql_datetime(value: datetime) -> str:
    """A SOQL datetime literal (unquoted), to the millisecond: SystemModstamp ties are exact."""
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def soql_string(value: str) -> str:
    """A quoted SOQL string literal ("Quoted String Escape Sequences": backslash and quote)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _decode(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == DATE:
        try:
            return datetime.combine(date.fromisoformat(str(value)[:10]), datetime.min.time(), UTC)
        except ValueError:
            return None
    if kind == DATETIME:
        return parse_datetime(value)
    if kind == LIST:
        return [v for v in str(value).split(";") if v]
    if kind == INT:
        return int(value) if isinstance(value, (int, float)) else value
    if kind == NUMBER:
        return float(value) if isinstance(value, (int, float)) else value
    return value


def _encode(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == DATE:
        moment = value if isinstance(value, (datetime, date)) else parse_datetime(value)
        if isinstance(moment, datetime):
            moment = moment.astimezone(UTC).date()
        return moment.isoformat() if moment else None
    if kind == DATETIME:
        moment = value if isinstance(value, datetime) else parse_datetime(value)
        if moment is None:
            return None
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if kind == LIST:
        return ";".join(str(v) for v in value) if isinstance(value, (list, tuple, set)) else str(value)
    if kind == INT and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def to_unified(entity: str, raw: Mapping, describe: Mapping[str, dict], field_mappings=None) -> dict[str, Any]:
    """Unified fields of a Salesforce record (association fields included, as external ids)."""
    obj = (raw.get("attributes") or {}).get("type") or object_of_id(raw.get("Id", ""))
    out: dict[str, Any] = {}
    table = field_table(entity, obj, field_mappings)
    mapped = {remote for remote, _ in table.values()}
    for name, (remote, kind) in table.items():
        if remote in raw:
            out[name] = _decode(_kind_of(describe, remote, kind), raw[remote])
    if entity == "deal":
        out["status"] = "open" if not raw.get("IsClosed") else ("won" if raw.get("IsWon") else "lost")
    if entity == "task":
        out["status"] = {v: k for k, v in TASK_STATUS.items()}.get(out.get("status"), out.get("status"))
        out["priority"] = {v: k for k, v in PRIORITY.items()}.get(out.get("priority"), out.get("priority"))
        out["title"] = out.get("title") or "(no subject)"
    if entity == "activity" and obj == "Note":
        out["type"] = "note"
        if out.get("subject") == note_title(raw.get("Body")):
            out["subject"] = None        # the title was made from the body: the note has no subject
    elif entity == "activity":
        out["type"] = "meeting" if obj == "Event" else task_activity_type(raw) or "call"
        if obj == "Task" and out["type"] == "call":
            seconds = raw.get("CallDurationInSeconds")
            out["duration_minutes"] = int(seconds) // 60 if isinstance(seconds, (int, float)) else None
            out["direction"] = str(raw["CallType"]).lower() if raw.get("CallType") else None
    out.update(_associations(entity, obj, raw))
    out["custom_fields"] = {name: _decode(_kind_of(describe, name, TEXT), raw.get(name))
                            for name, d in describe.items()
                            if d.get("custom") and name != MARKER_FIELD and name not in mapped and name in raw}
    out["owner_id"] = raw.get("OwnerId")
    out["created_at"] = parse_datetime(raw.get("CreatedDate"))
    # SystemModstamp: the listing's order and cursor (it also moves on automated changes).
    out["updated_at"] = parse_datetime(raw.get("SystemModstamp") or raw.get("LastModifiedDate"))
    return out


def _associations(entity: str, obj: str, raw: Mapping) -> dict[str, str | None]:
    if obj == "Note":
        # Only the parent's kind: a Note cannot hold the others, so it says nothing of them (a
        # local note's other associations are neither cleared nor compared).
        parent = raw.get("ParentId")
        kind = next((name for name, target in NOTE_PARENTS if target == object_of_id(parent or "")), None)
        return {kind: parent} if kind else {}
    if obj in ASSOCIATION_FIELDS:
        return {name: raw.get(field) for name, field in ASSOCIATION_FIELDS[obj].items()}
    if obj in ("Task", "Event"):
        who, what = raw.get("WhoId"), raw.get("WhatId")
        return {"contact_id": who if object_of_id(who or "") == "Contact" else None,
                "deal_id": what if object_of_id(what or "") == "Opportunity" else None,
                "company_id": what if object_of_id(what or "") == "Account" else raw.get("AccountId")}
    return {}


def to_salesforce(entity: str, obj: str, fields: Mapping[str, Any], associations: Mapping[str, str | None],
                  describe: Mapping[str, dict], field_mappings=None, *, creating: bool,
                  current: Mapping | None = None) -> dict[str, Any]:
    """The request body of one record (only fields the org lets us write on create/update).
    `current`: the Note as Salesforce holds it, for an update of one (its Title may follow its body)."""
    body: dict[str, Any] = {}
    for name, (remote, kind) in field_table(entity, obj, field_mappings).items():
        if name not in fields:
            continue
        value = fields[name]
        if entity == "task" and name == "status":
            value = TASK_STATUS.get(value, value) if value else "Not Started"
        if entity == "task" and name == "priority":
            value = PRIORITY.get(value, value) if value else "Normal"
        body[remote] = _encode(_kind_of(describe, remote, kind), value)
    activity_type = fields.get("type") or "call"
    if entity == "activity" and obj == "Task" and activity_type == "call":
        if "duration_minutes" in fields:
            minutes = fields["duration_minutes"]
            body["CallDurationInSeconds"] = int(minutes) * 60 if minutes is not None else None
        if "direction" in fields:
            body["CallType"] = DIRECTION.get(str(fields["direction"] or "").lower())
    if entity == "activity" and obj == "Task" and creating:
        subtype = "Email" if activity_type == "email" else "Call"
        body.update(TaskSubtype=subtype, Type=subtype, Status="Completed")
    if entity == "activity" and obj == "Event" and creating and not body.get("StartDateTime"):
        raise MappingError("a meeting needs occurred_at (Event.StartDateTime is required)")
    if entity == "activity" and obj == "Note":
        _note_title(body, creating=creating, current=current)
    for name, value in (fields.get("custom_fields") or {}).items():
        if name in describe and describe[name].get("custom"):
            body[name] = _encode(_kind_of(describe, name, TEXT), value)
    if obj != "Note" or creating:     # a Note's parent is set once, on create
        body.update(_association_body(obj, associations))
    allowed = {name for name, d in describe.items() if d.get("createable" if creating else "updateable")}
    if describe:
        body = {k: v for k, v in body.items() if k in allowed}
    if creating:
        body = {k: v for k, v in body.items() if v not in (None, "")}
    return body


def _note_title(body: dict[str, Any], *, creating: bool, current: Mapping | None) -> None:
    """Note.Title is required and holds 80 characters ("Salesforce Object Reference: Note"): a subject
    is cut to that; a note without one is titled by its body's first line, and keeps following its
    body while its title is still the one made from it."""
    if body.get("Title"):
        body["Title"] = str(body["Title"])[:NOTE_TITLE_LENGTH]
        return
    text = body["Body"] if "Body" in body else (current or {}).get("Body")
    untitled = current is not None and current.get("Title") == note_title(current.get("Body"))
    if creating or "Title" in body or ("Body" in body and untitled):
        body["Title"] = note_title(text)


def _association_body(obj: str, associations: Mapping[str, str | None]) -> dict[str, Any]:
    if obj == "Note":
        # ParentId: the one record of a note, required on create and never updated (a move is a
        # new Note, made by the adapter); a note with nothing to hang on cannot be written.
        parent = note_parent(associations)
        if parent is None:
            raise MappingError("a note needs a contact, deal or company already synced to Salesforce: "
                               "Note.ParentId is required")
        return {"ParentId": parent}
    if obj in ASSOCIATION_FIELDS:
        return {field: associations[name] or None for name, field in ASSOCIATION_FIELDS[obj].items()
                if name in associations}
    if obj in ("Task", "Event"):
        body: dict[str, Any] = {}
        if "contact_id" in associations:
            body["WhoId"] = associations["contact_id"] or None
        if "deal_id" in associations or "company_id" in associations:
            # WhatId holds one record: the deal when there is one, else the company.
            body["WhatId"] = associations.get("deal_id") or associations.get("company_id") or None
        return body
    return {}


def object_for_write(entity: str, fields: Mapping[str, Any], external_id: str | None) -> str:
    if external_id:
        obj = object_of_id(external_id)
        if obj in OBJECTS[entity]:
            return obj
        raise MappingError(f"{external_id!r} is not the id of a Salesforce {' or '.join(OBJECTS[entity])}")
    if entity != "activity":
        return OBJECTS[entity][0]
    kind = fields.get("type")
    if kind == "meeting":
        return "Event"
    if kind in ("call", "email"):
        return "Task"
    if kind == "note":
        return "Note"
    raise MappingError(f"Salesforce keeps meetings (Event), calls and emails (Task) and notes (Note) as "
                       f"activities, not {kind!r}")
