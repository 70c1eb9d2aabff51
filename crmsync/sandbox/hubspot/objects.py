"""HubSpot object types, their default properties, property definitions and association types
(reference §1, §2.2, §2.3, §5.1)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectType:
    name: str                 # path name: "contacts"
    type_id: str              # "0-1"
    singular: str             # "contact" (association type strings, webhook subscription types)
    upper: str                # "CONTACT" (batch error messages)
    modified_prop: str        # "lastmodifieddate" | "hs_lastmodifieddate"
    created_prop: str         # "createdate" | "hs_createdate"
    defaults: tuple           # properties returned when none are requested
    id_param: str             # spec path parameter name, e.g. "contactId"
    required: tuple = ()      # at least these on create
    engagement: bool = False
    text_props: tuple = ()    # searched by the free-text `query`
    unique_props: tuple = ()  # usable as idProperty


def _t(name, tid, singular, modified, created, defaults, id_param, **kw) -> ObjectType:
    return ObjectType(name, tid, singular, singular.upper(), modified, created, tuple(defaults), id_param, **kw)


_ENG = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id")
TYPES: dict[str, ObjectType] = {t.name: t for t in (
    _t("contacts", "0-1", "contact", "lastmodifieddate", "createdate",
       ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"), "contactId",
       text_props=("firstname", "lastname", "email", "phone", "hs_additional_emails", "fax", "mobilephone",
                   "company"), unique_props=("email", "hs_object_id")),
    _t("companies", "0-2", "company", "hs_lastmodifieddate", "createdate",
       ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"), "companyId",
       required=("name|domain",), text_props=("website", "phone", "name", "domain"),
       unique_props=("hs_object_id",)),
    _t("deals", "0-3", "deal", "hs_lastmodifieddate", "createdate",
       ("amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate", "hs_object_id",
        "pipeline"), "dealId", required=("dealname", "dealstage", "pipeline"),
       text_props=("dealname", "pipeline", "dealstage", "description", "dealtype"), unique_props=("hs_object_id",)),
    _t("tasks", "0-27", "task", "hs_lastmodifieddate", "hs_createdate", _ENG, "taskId", required=("hs_timestamp",),
       engagement=True, text_props=("hs_task_body", "hs_task_subject"), unique_props=("hs_object_id",)),
    _t("notes", "0-46", "note", "hs_lastmodifieddate", "hs_createdate", _ENG, "noteId", required=("hs_timestamp",),
       engagement=True, text_props=("hs_note_body",), unique_props=("hs_object_id",)),
    _t("meetings", "0-47", "meeting", "hs_lastmodifieddate", "hs_createdate", _ENG, "meetingId",
       required=("hs_timestamp",), engagement=True, text_props=("hs_meeting_title", "hs_meeting_body"),
       unique_props=("hs_object_id",)),
    _t("calls", "0-48", "call", "hs_lastmodifieddate", "hs_createdate", _ENG, "callId", required=("hs_timestamp",),
       engagement=True, text_props=("hs_call_title", "hs_call_body"), unique_props=("hs_object_id",)),
    _t("emails", "0-49", "email", "hs_lastmodifieddate", "hs_createdate", _ENG, "emailId",
       required=("hs_timestamp", "hs_email_direction"), engagement=True,
       text_props=("hs_email_subject", "hs_email_text"), unique_props=("hs_object_id",)),
)}
BY_ID = {t.type_id: t for t in TYPES.values()}
BY_SINGULAR = {t.singular: t for t in TYPES.values()}


def lookup(name: str) -> ObjectType | None:
    """Accept "contacts", "0-1", "contact", any case (paths and association endpoints use all three)."""
    key = name.lower()
    return TYPES.get(key) or BY_ID.get(key) or BY_SINGULAR.get(key)


# ---- properties ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PropertyDef:
    name: str
    label: str
    type: str = "string"          # string | number | datetime | date | enumeration | bool | phone_number
    field_type: str = "text"
    group: str = "information"
    options: tuple = ()           # enumeration values
    read_only: bool = False
    hubspot_defined: bool = True
    unique: bool = False


def _p(name, type_="string", field="text", options=(), **kw) -> PropertyDef:
    label = name.replace("hs_", "").replace("_", " ").capitalize()
    return PropertyDef(name, label, type_, field, options=tuple(options), **kw)


_SYSTEM = lambda created, modified: (
    _p(created, "datetime", "date", read_only=True),
    _p(modified, "datetime", "date", read_only=True),
    _p("hs_object_id", "number", "number", read_only=True, unique=True),
    _p("hs_object_source", read_only=True), _p("hs_object_source_label", read_only=True),
    _p("hubspot_owner_id", "enumeration", "select"),
)
LIFECYCLE = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer",
             "evangelist", "other")
CUSTOM = (  # custom properties every seeded portal has (hubspot_defined False)
    _p("crm_tier", "enumeration", "select", ("bronze", "silver", "gold"), hubspot_defined=False, group="custom"),
    _p("crm_score", "number", "number", hubspot_defined=False, group="custom"),
)
PROPERTIES: dict[str, dict[str, PropertyDef]] = {}


def _register(type_name: str, *defs: PropertyDef) -> None:
    PROPERTIES[type_name] = {d.name: d for d in defs}


_register("contacts", *_SYSTEM("createdate", "lastmodifieddate"), _p("hs_lastmodifieddate", "datetime", "date",
          read_only=True), _p("email", unique=True), _p("firstname"), _p("lastname"), _p("phone", "string", "phonenumber"),
          _p("mobilephone", "string", "phonenumber"), _p("fax"), _p("company"), _p("jobtitle"), _p("website"),
          _p("address"), _p("city"), _p("state"), _p("zip"), _p("country"),
          _p("lifecyclestage", "enumeration", "radio", LIFECYCLE),
          _p("hs_lead_status", "enumeration", "radio", ("NEW", "OPEN", "IN_PROGRESS", "CONNECTED", "UNQUALIFIED")),
          _p("hs_additional_emails", "enumeration", "checkbox", read_only=True),
          _p("hs_merged_object_ids", "enumeration", "checkbox", read_only=True), *CUSTOM)
_register("companies", *_SYSTEM("createdate", "hs_lastmodifieddate"), _p("name"), _p("domain"), _p("industry"),
          _p("phone", "string", "phonenumber"), _p("city"), _p("state"), _p("country"), _p("website"),
          _p("numberofemployees", "number", "number"), _p("annualrevenue", "number", "number"),
          _p("lifecyclestage", "enumeration", "radio", LIFECYCLE), _p("description", field="textarea"),
          _p("hs_merged_object_ids", "enumeration", "checkbox", read_only=True), *CUSTOM)
_register("deals", *_SYSTEM("createdate", "hs_lastmodifieddate"), _p("dealname"), _p("amount", "number", "number"),
          _p("dealstage", "enumeration", "radio"), _p("pipeline", "enumeration", "select"),
          _p("closedate", "datetime", "date"), _p("dealtype", "enumeration", "radio", ("newbusiness",
          "existingbusiness")), _p("description", field="textarea"),
          _p("hs_merged_object_ids", "enumeration", "checkbox", read_only=True), *CUSTOM)
_ENG_COMMON = lambda: (*_SYSTEM("hs_createdate", "hs_lastmodifieddate"),
                       _p("hs_timestamp", "datetime", "date"))
_register("tasks", *_ENG_COMMON(), _p("hs_task_subject"), _p("hs_task_body", field="textarea"),
          _p("hs_task_status", "enumeration", "select", ("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED",
                                                         "DEFERRED")),
          _p("hs_task_priority", "enumeration", "select", ("LOW", "MEDIUM", "HIGH", "NONE")),
          _p("hs_task_type", "enumeration", "select", ("EMAIL", "CALL", "TODO")))
_register("notes", *_ENG_COMMON(), _p("hs_note_body", field="html"), _p("hs_attachment_ids", "enumeration", "checkbox"))
_register("calls", *_ENG_COMMON(), _p("hs_call_title"), _p("hs_call_body", field="html"),
          _p("hs_call_direction", "enumeration", "select", ("INBOUND", "OUTBOUND")),
          _p("hs_call_duration", "number", "number"),
          _p("hs_call_status", "enumeration", "select", ("BUSY", "CALLING_CRM_USER", "CANCELED", "COMPLETED",
                                                         "CONNECTING", "FAILED", "IN_PROGRESS", "NO_ANSWER",
                                                         "QUEUED", "RINGING")),
          _p("hs_call_disposition"), _p("hs_call_from_number"), _p("hs_call_to_number"))
_register("meetings", *_ENG_COMMON(), _p("hs_meeting_title"), _p("hs_meeting_body", field="html"),
          _p("hs_internal_meeting_notes", field="html"), _p("hs_meeting_start_time", "datetime", "date"),
          _p("hs_meeting_end_time", "datetime", "date"), _p("hs_meeting_location"),
          _p("hs_meeting_outcome", "enumeration", "select", ("SCHEDULED", "COMPLETED", "RESCHEDULED", "NO_SHOW",
                                                             "CANCELED")))
_register("emails", *_ENG_COMMON(), _p("hs_email_subject"), _p("hs_email_text", field="textarea"),
          _p("hs_email_html", field="html"),
          _p("hs_email_direction", "enumeration", "select", ("EMAIL", "INCOMING_EMAIL", "FORWARDED_EMAIL")),
          _p("hs_email_status", "enumeration", "select", ("BOUNCED", "FAILED", "SCHEDULED", "SENDING", "SENT")),
          _p("hs_email_headers"))


def group_name(type_name: str, group: str) -> str:
    """A property's groupName: HubSpot's default groups are "contactinformation",
    "companyinformation", "dealinformation", ...; the portal's own are kept as named."""
    return f"{TYPES[type_name].singular}information" if group == "information" else group


def property_groups(defs) -> list[tuple[str, str]]:
    """(name, label) of the groups the properties use, in order of first use (the names as
    `PropertyDef.group` stores them)."""
    seen: dict[str, str] = {}
    for d in defs:
        seen.setdefault(d.group, d.group.replace("_", " ").capitalize())
    return list(seen.items())


# ---- deal pipelines -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    id: str
    label: str
    probability: str = ""    # deals only
    closed: bool = False


# A new portal's ticket pipeline (§ pipelines): stage metadata carries ticketState, not probability.
TICKET_PIPELINES = {
    "0": ("Support Pipeline", (
        Stage("1", "New"), Stage("2", "Waiting on contact"), Stage("3", "Waiting on us"),
        Stage("4", "Closed", closed=True),
    )),
}

PIPELINES = {
    "default": ("Sales Pipeline", (
        Stage("appointmentscheduled", "Appointment Scheduled", "0.2"),
        Stage("qualifiedtobuy", "Qualified To Buy", "0.4"),
        Stage("presentationscheduled", "Presentation Scheduled", "0.6"),
        Stage("decisionmakerboughtin", "Decision Maker Bought-In", "0.8"),
        Stage("contractsent", "Contract Sent", "0.9"),
        Stage("closedwon", "Closed Won", "1.0", True),
        Stage("closedlost", "Closed Lost", "0.0", True),
    )),
}


# ---- association types (§5.1) ---------------------------------------------------------------
@dataclass(frozen=True)
class AssocPair:
    primary: int | None      # the "Primary" labelled type, if the pair has one
    unlabeled: int           # the default type


ASSOC: dict[tuple[str, str], AssocPair] = {
    ("contacts", "companies"): AssocPair(1, 279), ("companies", "contacts"): AssocPair(2, 280),
    ("deals", "contacts"): AssocPair(None, 3), ("contacts", "deals"): AssocPair(None, 4),
    ("deals", "companies"): AssocPair(5, 341), ("companies", "deals"): AssocPair(6, 342),
}
_ENG_IDS = {  # engagement -> (contact, company, deal) and back (contact, company, deal) -> engagement
    "tasks": ((204, 192, 216), (203, 191, 215)), "notes": ((202, 190, 214), (201, 189, 213)),
    "calls": ((194, 182, 206), (193, 181, 205)), "meetings": ((200, 188, 212), (199, 187, 211)),
    "emails": ((198, 186, 210), (197, 185, 209)),
}
for _eng, (_out, _back) in _ENG_IDS.items():
    for _other, _fwd, _rev in zip(("contacts", "companies", "deals"), _out, _back, strict=True):
        ASSOC[(_eng, _other)] = AssocPair(None, _fwd)
        ASSOC[(_other, _eng)] = AssocPair(None, _rev)

TYPE_IDS: dict[int, tuple[str, str, bool]] = {}  # typeId -> (from, to, is_primary)
for (_f, _to), _pair in ASSOC.items():
    TYPE_IDS[_pair.unlabeled] = (_f, _to, False)
    if _pair.primary:
        TYPE_IDS[_pair.primary] = (_f, _to, True)


def type_string(from_type: str, to_type: str, type_id: int) -> str:
    """Inline association label used by list/get: contact_to_company, contact_to_company_unlabeled."""
    base = f"{TYPES[from_type].singular}_to_{TYPES[to_type].singular}"
    pair = ASSOC[(from_type, to_type)]
    return base + "_unlabeled" if pair.primary and type_id == pair.unlabeled else base

