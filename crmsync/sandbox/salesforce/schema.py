"""The six sObjects the sandbox holds and what their describe says of each field.

Follows "sObject Describe" (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_describe.htm)
and the Object Reference pages of Contact, Account, Opportunity, Task and Event
(https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_contact.htm
and siblings): field types (`id`, `string`, `picklist`, `multipicklist` whose values are joined by
`;`, `reference`, `currency`, `percent`, `date`, `datetime`, ...), `createable`/`updateable`, custom
fields whose API names end in `__c`, and the three-character key prefix every record id starts with.

`Opportunity.ContactId` is createable but not updateable (it is derived from the primary contact
role afterwards); `Task.TaskSubtype` is set on create only; `IsClosed`/`IsWon` are derived from the
stage; `SystemModstamp`, `CreatedDate`, `LastModifiedDate` and `IsDeleted` are the system's.

`Note` is the classic note ("Salesforce Object Reference: Note",
https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_note.htm):
`ParentId` names the one record it is attached to (required on create, not updateable), `Title` is
required and holds 80 characters, `Body` is a 32 KB text area, `IsPrivate` defaults to false. The
reference lists no custom fields for it, so it has no `crmsync_id__c` either.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    label: str = ""
    createable: bool = True
    updateable: bool = True
    nillable: bool = True
    custom: bool = False
    picklist: tuple[str, ...] = ()
    restricted: bool = False         # a restricted picklist refuses values it does not list
    reference_to: tuple[str, ...] = ()
    external_id: bool = False
    unique: bool = False
    length: int = 0
    default: object = None           # value a create gets when it leaves the field out

    def describe(self) -> dict:
        soap = {"id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "int": "xsd:int",
                "double": "xsd:double", "currency": "xsd:double", "percent": "xsd:double", "date": "xsd:date",
                "datetime": "xsd:dateTime"}.get(self.type, "xsd:string")
        system = not (self.createable or self.updateable)
        return {
            "name": self.name, "label": self.label or self.name.replace("__c", "").replace("_", " "),
            "type": self.type, "soapType": soap, "length": self.length,
            "createable": self.createable, "updateable": self.updateable,
            "nillable": self.nillable, "custom": self.custom, "externalId": self.external_id,
            "unique": self.unique, "idLookup": self.name == "Id" or self.external_id,
            "filterable": True, "sortable": self.type not in ("multipicklist", "textarea"),
            "calculated": False, "defaultedOnCreate": self.default is not None or system,
            "picklistValues": [{"value": v, "label": v, "active": True, "defaultValue": v == self.default,
                                "validFor": None} for v in self.picklist],
            "restrictedPicklist": self.restricted,
            "referenceTo": list(self.reference_to),
            "relationshipName": (self.name[:-2] if self.name.endswith("Id") and self.reference_to
                                 and self.name not in ("Id",) else None),
        }


@dataclass(frozen=True)
class SObject:
    name: str
    label: str
    key_prefix: str
    fields: tuple[Field, ...]
    by_lower: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        self.by_lower.update({f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> Field | None:
        """Field names are case-insensitive in SOQL and in request bodies."""
        return self.by_lower.get(name.lower())

    def describe(self, version: str) -> dict:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {**self.summary(version), "fields": [f.describe() for f in self.fields],
                "childRelationships": [], "recordTypeInfos": [],
                "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}}

    def summary(self, version: str) -> dict:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {"name": self.name, "label": self.label, "labelPlural": self.label + "s", "keyPrefix": self.key_prefix,
                "custom": False, "createable": True, "updateable": True, "deletable": True, "queryable": True,
                "retrieveable": True, "searchable": True, "replicateable": True, "undeletable": True,
                "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}}


def _system(*extra: Field, marker: bool = True) -> tuple[Field, ...]:
    ro = {"createable": False, "updateable": False}
    marker_fields = (Field("crmsync_id__c", "string", "crmsync id", custom=True, external_id=True, unique=True,
                           length=64),) if marker else ()
    return (Field("Id", "id", "Record ID", nillable=False, **ro),
            Field("IsDeleted", "boolean", "Deleted", nillable=False, **ro),
            Field("CreatedDate", "datetime", "Created Date", nillable=False, **ro),
            Field("LastModifiedDate", "datetime", "Last Modified Date", nillable=False, **ro),
            Field("SystemModstamp", "datetime", "System Modstamp", nillable=False, **ro),
            Field("OwnerId", "reference", "Owner ID", reference_to=("User",), nillable=False, default="005000000000001AAA"),
            *marker_fields, *extra)


LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
STAGES = ("Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
          "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost")
STAGE_PROBABILITY = dict(zip(STAGES, (10, 10, 20, 50, 60, 70, 75, 90, 100, 0), strict=True))
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
INDUSTRIES = ("Agriculture", "Banking", "Consulting", "Education", "Electronics", "Energy", "Healthcare",
              "Manufacturing", "Media", "Retail", "Technology", "Telecommunications", "Other")
WHO = ("Contact",)
WHAT = ("Account", "Opportunity")
NOTE_PARENTS = ("Account", "Contact", "Opportunity")   # of the objects the sandbox holds

OBJECTS: dict[str, SObject] = {o.name: o for o in (
    SObject("Account", "Account", "001", _system(
        Field("Name", "string", "Account Name", nillable=False, length=255),
        Field("Website", "url", length=255), Field("Phone", "phone", length=40),
        Field("Industry", "picklist", picklist=INDUSTRIES),
        Field("Type", "picklist", "Account Type", picklist=("Prospect", "Customer - Direct", "Partner", "Other")),
        Field("NumberOfEmployees", "int", "Employees"), Field("AnnualRevenue", "currency", "Annual Revenue"),
        Field("Description", "textarea", length=32000),
        Field("BillingCity", "string", length=40), Field("BillingCountry", "string", length=80),
        Field("Region__c", "picklist", "Region", custom=True, picklist=("EMEA", "AMER", "APAC")),
    )),
    SObject("Contact", "Contact", "003", _system(
        Field("FirstName", "string", length=40), Field("LastName", "string", nillable=False, length=80),
        Field("Name", "string", "Full Name", createable=False, updateable=False, length=121),
        Field("Email", "email", length=80), Field("Phone", "phone", length=40),
        Field("MobilePhone", "phone", length=40), Field("Title", "string", length=128),
        Field("Department", "string", length=80), Field("LeadSource", "picklist", picklist=LEAD_SOURCES),
        Field("Description", "textarea", length=32000),
        Field("MailingCity", "string", length=40), Field("MailingCountry", "string", length=80),
        Field("Birthdate", "date"),
        Field("AccountId", "reference", "Account ID", reference_to=("Account",)),
        Field("Tier__c", "picklist", "Tier", custom=True, picklist=("Gold", "Silver", "Bronze"), restricted=True),
        Field("Interests__c", "multipicklist", "Interests", custom=True,
              picklist=("Mobile", "Analytics", "Security", "Cloud"), restricted=True),
    )),
    SObject("Opportunity", "Opportunity", "006", _system(
        Field("Name", "string", nillable=False, length=120),
        Field("StageName", "picklist", "Stage", nillable=False, picklist=STAGES, restricted=True),
        Field("Amount", "currency"), Field("Probability", "percent", "Probability (%)"),
        Field("CloseDate", "date", "Close Date", nillable=False),
        Field("Type", "picklist", "Opportunity Type", picklist=("New Business", "Existing Business")),
        Field("LeadSource", "picklist", picklist=LEAD_SOURCES),
        Field("Description", "textarea", length=32000),
        Field("AccountId", "reference", "Account ID", reference_to=("Account",)),
        Field("ContactId", "reference", "Contact ID", reference_to=("Contact",), updateable=False),
        Field("IsClosed", "boolean", "Closed", createable=False, updateable=False, nillable=False),
        Field("IsWon", "boolean", "Won", createable=False, updateable=False, nillable=False),
        Field("Forecast_Note__c", "string", "Forecast note", custom=True, length=255),
    )),
    SObject("Task", "Task", "00T", _system(
        Field("Subject", "combobox", length=255),
        Field("Description", "textarea", "Comments", length=32000),
        Field("ActivityDate", "date", "Due Date Only"),
        Field("Status", "picklist", nillable=False, picklist=TASK_STATUSES, restricted=True, default="Not Started"),
        Field("Priority", "picklist", nillable=False, picklist=("High", "Normal", "Low"), restricted=True,
              default="Normal"),
        Field("Type", "picklist", picklist=("Call", "Email", "Meeting", "Other")),
        Field("TaskSubtype", "picklist", "Task Subtype", picklist=("Task", "Email", "Call"), restricted=True,
              updateable=False, default="Task"),
        Field("WhoId", "reference", "Name ID", reference_to=WHO),
        Field("WhatId", "reference", "Related To ID", reference_to=WHAT),
        Field("AccountId", "reference", "Account ID", reference_to=("Account",), createable=False, updateable=False),
        Field("CallDurationInSeconds", "int", "Call Duration"),
        Field("CallType", "picklist", picklist=("Inbound", "Outbound", "Internal")),
        Field("CallDisposition", "string", "Call Result", length=255),
        Field("IsClosed", "boolean", "Closed", createable=False, updateable=False, nillable=False),
    )),
    SObject("Event", "Event", "00U", _system(
        Field("Subject", "combobox", length=255),
        Field("Description", "textarea", length=32000),
        Field("StartDateTime", "datetime", "Start", nillable=False),
        Field("EndDateTime", "datetime", "End"),
        Field("DurationInMinutes", "int", "Duration"),
        Field("ActivityDateTime", "datetime", "Due Date Time", createable=False, updateable=False),
        Field("Location", "string", length=255),
        Field("Type", "picklist", picklist=("Call", "Email", "Meeting", "Other")),
        Field("WhoId", "reference", "Name ID", reference_to=WHO),
        Field("WhatId", "reference", "Related To ID", reference_to=WHAT),
        Field("AccountId", "reference", "Account ID", reference_to=("Account",), createable=False, updateable=False),
    )),
    SObject("Note", "Note", "002", _system(
        Field("ParentId", "reference", "Parent ID", reference_to=NOTE_PARENTS, nillable=False, updateable=False),
        Field("Title", "string", nillable=False, length=80),
        Field("Body", "textarea", length=32000),
        Field("IsPrivate", "boolean", "Private", nillable=False, default=False),
        marker=False)),
)}
OBJECT_BY_PREFIX = {o.key_prefix: o.name for o in OBJECTS.values()}


def lookup(name: str) -> SObject | None:
    """sObject names are case-insensitive in URLs and SOQL."""
    for obj in OBJECTS.values():
        if obj.name.lower() == name.lower():
            return obj
    return None
