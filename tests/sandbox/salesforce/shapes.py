"""The response shapes the REST API Developer Guide documents, as JSON Schemas, so every answer the
Salesforce sandbox gives in a test is checked against them (Salesforce publishes no OpenAPI
document; these are written from the guide's pages, linked per shape)."""
from __future__ import annotations

import re

from jsonschema import Draft202012Validator

DATETIME = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$"}
ID18 = {"type": "string", "pattern": r"^[a-zA-Z0-9]{18}$"}
# errorcodes.htm: an array of {message, errorCode[, fields]}
ERRORS = {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["message", "errorCode"],
          "properties": {"message": {"type": "string"}, "errorCode": {"type": "string"},
                         "fields": {"type": "array", "items": {"type": "string"}}}}}
RECORD = {"type": "object", "required": ["attributes"],
          "properties": {"attributes": {"type": "object", "required": ["type", "url"]}, "Id": ID18}}
# resources_query.htm
QUERY = {"type": "object", "required": ["totalSize", "done", "records"],
         "properties": {"totalSize": {"type": "integer"}, "done": {"type": "boolean"},
                        "nextRecordsUrl": {"type": "string", "pattern": r"^/services/data/v\d+\.\d/query/"},
                        "records": {"type": "array", "items": RECORD}},
         "if": {"properties": {"done": {"const": False}}}, "then": {"required": ["nextRecordsUrl"]}}
# dome_sobject_create.htm / resources_composite_sobjects_collections.htm
SAVE = {"type": "object", "required": ["success", "errors"],
        "properties": {"id": ID18, "success": {"type": "boolean"}, "created": {"type": "boolean"},
                       "errors": {"type": "array", "items": {"type": "object", "required": ["statusCode", "message"]}}}}
# resources_sobject_describe.htm
DESCRIBE = {"type": "object", "required": ["name", "keyPrefix", "fields", "createable", "updateable", "urls"],
            "properties": {"fields": {"type": "array", "items": {"type": "object", "required": [
                "name", "type", "createable", "updateable", "nillable", "custom", "picklistValues", "referenceTo"]}}}}
SHAPES = [
    ("GET", r"^/services/data/?$", 200, {"type": "array", "items": {"type": "object",
                                                                     "required": ["label", "url", "version"]}}),
    ("GET", r"/query(All)?/?$", 200, QUERY),
    ("GET", r"/query(All)?/[^/]+$", 200, QUERY),
    ("GET", r"/sobjects/?$", 200, {"type": "object", "required": ["encoding", "maxBatchSize", "sobjects"]}),
    ("GET", r"/sobjects/\w+/describe/?$", 200, DESCRIBE),
    # resources_getupdated.htm / resources_getdeleted.htm
    ("GET", r"/sobjects/\w+/updated/?$", 200, {"type": "object", "required": ["ids", "latestDateCovered"],
                                                "properties": {"ids": {"type": "array", "items": ID18},
                                                               "latestDateCovered": DATETIME}}),
    ("GET", r"/sobjects/\w+/deleted/?$", 200, {
        "type": "object", "required": ["deletedRecords", "earliestDateAvailable", "latestDateCovered"],
        "properties": {"deletedRecords": {"type": "array", "items": {"type": "object", "required": ["id", "deletedDate"],
                                                                      "properties": {"id": ID18, "deletedDate": DATETIME}}},
                       "earliestDateAvailable": DATETIME, "latestDateCovered": DATETIME}}),
    ("GET", r"/sobjects/\w+/\w+/?$", 200, RECORD),
    ("POST", r"/sobjects/\w+/?$", 201, SAVE),
    ("PATCH", r"/sobjects/\w+/\w+/[^/]+$", 200, SAVE),
    ("PATCH", r"/sobjects/\w+/\w+/[^/]+$", 201, SAVE),
    ("POST", r"/composite/sobjects/?$", 200, {"type": "array", "items": SAVE}),
    ("PATCH", r"/composite/sobjects(/\w+/\w+)?/?$", 200, {"type": "array", "items": SAVE}),
    ("DELETE", r"/composite/sobjects/?$", 200, {"type": "array", "items": SAVE}),
    # resources_limits.htm
    ("GET", r"/limits/?$", 200, {"type": "object", "required": ["DailyApiRequests"],
                                  "additionalProperties": {"type": "object", "required": ["Max", "Remaining"]}}),
    # Bulk API 2.0 query_create_job.htm / query_get_job_info.htm
    ("POST", r"/jobs/query/?$", 200, {"type": "object", "required": ["id", "operation", "object", "state",
                                                                       "contentType", "apiVersion"]}),
    ("GET", r"/jobs/query/\w+/?$", 200, {"type": "object", "required": ["id", "state"],
                                          "properties": {"state": {"enum": ["UploadComplete", "InProgress",
                                                                            "JobComplete", "Failed", "Aborted"]}}}),
]
_VALIDATORS = [(m, re.compile(p), s, Draft202012Validator(schema)) for m, p, s, schema in SHAPES]
_ERRORS = Draft202012Validator(ERRORS)


def check(method: str, path: str, status: int, headers: list, body: bytes) -> list[str]:
    """Problems with one response of the sandbox's REST API (empty when it has the documented shape)."""
    import json

    if not path.startswith("/services/data"):
        return []
    problems = []
    if not any(k.lower() == "sforce-limit-info" and re.match(r"^api-usage=\d+/\d+$", v) for k, v in headers):
        problems.append(f"{method} {path} {status}: no Sforce-Limit-Info: api-usage=n/m header")
    ctype = next((v for k, v in headers if k.lower() == "content-type"), "")
    if not body or "json" not in ctype and status < 300:
        return problems
    doc = json.loads(body)
    if status >= 400 or status == 300 and not isinstance(doc, list):
        validators = [_ERRORS]
    else:
        validators = [v for m, p, s, v in _VALIDATORS if m == method and s == status and p.search(path)]
    for validator in validators[:1]:
        problems += [f"{method} {path} {status}: {e.message}" for e in validator.iter_errors(doc)][:3]
    return problems
