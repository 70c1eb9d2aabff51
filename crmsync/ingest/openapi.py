"""The OpenAPI 3.1 document of the ingest app, served at /openapi.json. Product event bodies are
generated from the marshmallow schemas in `crmsync.ingest.product_events`, so they cannot drift."""
from __future__ import annotations

from functools import cache

from marshmallow import fields, validate

from crmsync.ingest.product_events import PRODUCT_EVENTS


def _field_schema(field: fields.Field) -> dict:
    if isinstance(field, fields.Email):
        out = {"type": "string", "format": "email"}
    elif isinstance(field, fields.Url):
        out = {"type": "string", "format": "uri"}
    elif isinstance(field, fields.DateTime):
        out = {"type": "string", "format": "date-time"}
    elif isinstance(field, fields.Integer):
        out = {"type": "integer"}
    elif isinstance(field, fields.Number):
        out = {"type": "number"}
    elif isinstance(field, fields.Boolean):
        out = {"type": "boolean"}
    elif isinstance(field, fields.List):
        out = {"type": "array", "items": _field_schema(field.inner)}
    elif isinstance(field, fields.Dict):
        out = {"type": "object"}
    else:
        out = {"type": "string"}
    for v in field.validators:
        if isinstance(v, validate.Length):
            lo, hi = ("minItems", "maxItems") if out["type"] == "array" else ("minLength", "maxLength")
            if v.min is not None:
                out[lo] = v.min
            if v.max is not None:
                out[hi] = v.max
        elif isinstance(v, validate.Range):
            if v.min is not None:
                out["minimum"] = v.min
            if v.max is not None:
                out["maximum"] = v.max
    if field.metadata.get("description"):
        out["description"] = field.metadata["description"]
    return out


def _schema_of(schema_cls) -> dict:
    schema = schema_cls()
    props, required = {}, []
    for name, field in schema.fields.items():
        key = field.data_key or name
        props[key] = _field_schema(field)
        if field.required:
            required.append(key)
    out = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


_STORED = {"description": "Stored whole, before this answer; a worker then splits the delivery into its events, "
                          "each stored once (duplicates and retries are acknowledged, not stored twice)",
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Received"}}}}

_COMMON_ERRORS = {"400": _error("Malformed body"), "401": _error("Missing or wrong signature / credentials, "
                                                                 "or a stale timestamp"),
                  "413": _error("Body over the size limit (1 MB by default)"),
                  "415": _error("Content-Type is not application/json")}


_IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$"},
                    "description": "Repeating a key stores the event once"}


def _product_event(name: str, description: str) -> dict:
    stored = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventStored"}}}}
    return {
        "summary": f"Product event {name}: {description}",
        "parameters": [_IDEMPOTENCY_KEY],
        "security": [{"apiKey": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "$ref": f"#/components/schemas/{name}_event"}}}},
        "responses": {"202": {"description": "Stored; automation will run", **stored},
                      "200": {"description": "Already stored under this Idempotency-Key", **stored},
                      **_COMMON_ERRORS, "422": _error("The event's fields are invalid (details per field)")}}


def _cron(summary: str) -> dict:
    return {"summary": summary, "security": [{"cronSecret": []}],
            "responses": {"200": {"description": "Jobs created", "content": {"application/json": {"schema": {
                "type": "object", "required": ["dispatched"],
                "properties": {"dispatched": {"type": "array", "items": {"type": "string"}}}}}}},
                "401": _error("Missing or wrong cron secret"),
                "503": _error("CRMSYNC_CRON_SECRET is not configured")}}


@cache
def openapi_document() -> dict:
    event_schemas = {f"{name}_event": _schema_of(t.schema) for name, t in PRODUCT_EVENTS.items()}
    hubspot_event = {
        "type": "object", "required": ["eventId", "portalId", "objectId"],
        "properties": {"eventId": {"type": "integer"}, "subscriptionId": {"type": "integer"},
                       "portalId": {"type": "integer", "minimum": 1}, "appId": {"type": "integer"},
                       "occurredAt": {"type": "integer", "description": "epoch ms"},
                       "subscriptionType": {"type": "string", "examples": ["contact.propertyChange"]},
                       "eventType": {"type": "string"}, "attemptNumber": {"type": "integer"},
                       "objectId": {"type": "integer"}, "objectTypeId": {"type": "string"},
                       "propertyName": {"type": "string"}, "propertyValue": {},
                       "changeSource": {"type": "string"}, "mergedObjectIds": {"type": "array",
                                                                               "items": {"type": "integer"}},
                       "primaryObjectId": {"type": "integer"}, "newObjectId": {"type": "integer"}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "crmsync ingest", "version": "1",
                 "description": "CRM webhooks, product events and the cron trigger. Every refusal is a 4xx "
                                "with an Error body; nothing is written unless the request is accepted. "
                                "Bodies are JSON that PostgreSQL's jsonb can store: no NUL (\\u0000) in "
                                "strings, no NaN/Infinity, nesting at most 32 deep; anything else is a 400."},
        "paths": {
            "/webhooks/hubspot": {"post": {
                "summary": "HubSpot webhook delivery (up to 100 events), routed by each event's portalId",
                "description": "A portalId without a config is answered exactly as a wrong signature (401). "
                               "v1/v2 signatures (no timestamp) are accepted only for a config created with "
                               "--legacy-webhook-signatures.",
                "security": [{"hubspotSignatureV3": [], "hubspotRequestTimestamp": []},
                             {"hubspotSignature": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "array", "minItems": 1, "maxItems": 100,
                    "items": {"$ref": "#/components/schemas/HubSpotEvent"}}}}},
                "responses": {"200": _STORED, **_COMMON_ERRORS}}},
            "/webhooks/pipedrive/{config_id}": {"post": {
                "summary": "Pipedrive webhook (v2 or v1 payload) for one config",
                "parameters": [{"name": "config_id", "in": "path", "required": True,
                                "schema": {"type": "string", "format": "uuid"}}],
                "security": [{"pipedriveBasic": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/PipedriveWebhook"}}}},
                "responses": {"200": _STORED, **_COMMON_ERRORS,
                              "403": _error("The event's company is not this config's")}}},
            "/webhooks/salesforce/{config_id}": {"post": {
                "summary": "Salesforce Outbound Message (SOAP notifications, up to 100) for one config; "
                           "answered with the SOAP Ack; deduplicated by notification id",
                "parameters": [{"name": "config_id", "in": "path", "required": True,
                                "schema": {"type": "string", "format": "uuid"}},
                               {"name": "token", "in": "query", "required": True, "schema": {"type": "string"},
                                "description": "The config's webhook secret"}],
                "requestBody": {"required": True, "content": {"text/xml": {"schema": {"type": "string"}}}},
                "responses": {"200": {"description": "Stored whole; the SOAP notificationsResponse with "
                                                     "<Ack>true</Ack>",
                                      "content": {"text/xml": {"schema": {"type": "string"}}}},
                              "400": _error("Not a SOAP notifications message"),
                              "401": _error("Wrong or missing token, a config without a webhook secret, or an "
                                            "id that names no Salesforce config (answered alike)"),
                              "403": _error("The message's OrganizationId is not this config's org"),
                              "413": _error("Body over the size limit (1 MB by default)"),
                              "415": _error("Content-Type is not text/xml")}}},
            # One path per event type, so each body is tied to its type's schema.
            **{f"/events/{name}": {"post": _product_event(name, t.description)} for name, t in PRODUCT_EVENTS.items()},
            "/cron/sync": {"post": _cron("Dispatch due syncs (for an external cron; same as beat's entry)"),
                           "get": _cron("The same, for crons that can only GET (Vercel's)")},
            "/healthz": {"get": {"summary": "The process is up", "security": [],
                                 "responses": {"200": {"description": "Up"}}}},
            "/readyz": {"get": {"summary": "PostgreSQL and the broker answer", "security": [],
                                "responses": {"200": {"description": "Ready"},
                                              "503": _error("A dependency is unreachable (named in checks)")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics of this app's processes (no secrets, no tenant ids)",
                                 "security": [],
                                 "responses": {"200": {"description": "Prometheus text format",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                                      "responses": {"200": {"description": "OpenAPI 3.1"}}}},
        },
        "components": {
            "securitySchemes": {
                "hubspotSignatureV3": {"type": "apiKey", "in": "header", "name": "X-HubSpot-Signature-v3",
                                       "description": "base64 HMAC-SHA256(app secret, METHOD + URI + body + "
                                                      "X-HubSpot-Request-Timestamp); timestamp within 5 minutes"},
                "hubspotRequestTimestamp": {"type": "apiKey", "in": "header", "name": "X-HubSpot-Request-Timestamp",
                                            "description": "epoch milliseconds"},
                "hubspotSignature": {"type": "apiKey", "in": "header", "name": "X-HubSpot-Signature",
                                     "description": "v1 or v2 (X-HubSpot-Signature-Version) hex SHA-256; "
                                                    "only for configs that allow legacy signatures"},
                "pipedriveBasic": {"type": "http", "scheme": "basic",
                                   "description": "The user:password in the config's webhook secret"},
                "apiKey": {"type": "http", "scheme": "bearer",
                           "description": "A key from `crmsync api-keys create`"},
                "cronSecret": {"type": "http", "scheme": "bearer", "description": "CRMSYNC_CRON_SECRET"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error", "message"],
                          "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                                         "details": {"type": "object"}}},
                "Received": {"type": "object", "required": ["received", "deliveries"],
                             "properties": {"received": {"type": "integer", "description": "events in the body"},
                                            "deliveries": {"type": "array", "items": {"type": "string",
                                                                                      "format": "uuid"},
                                                           "description": "the stored delivery per config"}}},
                "EventStored": {"type": "object", "required": ["id", "event_type", "duplicate"],
                                "properties": {"id": {"type": "string", "format": "uuid"},
                                               "event_type": {"type": "string"},
                                               "duplicate": {"type": "boolean"}}},
                "HubSpotEvent": hubspot_event,
                "PipedriveWebhook": {"type": "object", "properties": {
                    "meta": {"type": "object"}, "data": {"type": ["object", "null"]},
                    "previous": {"type": ["object", "null"]}, "event": {"type": "string"},
                    "current": {}, "retry": {"type": "integer"}}},
                **event_schemas,
            },
        },
        "security": [],
    }
