"""The Salesforce sandbox as a WSGI app: REST API under ``/services/data/vXX.X/``, the OAuth token
endpoint, Bulk API 2.0 query jobs, limits, faults and the ``/_sandbox/`` admin API.

Which documented behaviour each part follows (REST API Developer Guide,
https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/, pages named below):
* ``GET /services/data/`` lists versions without a session (resources_versions.htm);
  ``/services/data/vXX.X/`` lists the resources (resources_discoveryresource.htm); an unknown
  version is a 404.
* ``sobjects`` (resources_describeGlobal.htm), ``sobjects/{type}/describe``
  (resources_sobject_describe.htm), record GET/POST/PATCH/DELETE (resources_sobject_retrieve.htm,
  dome_sobject_create.htm: 201 ``{"id", "success", "errors"}``; update and delete 204), upsert and
  GET by external id (dome_upsert.htm: 201 ``created: true``, 200 ``created: false``, 300 with the
  matching records' URLs when the value is not unique).
* ``query`` and ``queryAll`` (resources_query.htm, resources_queryall.htm): up to 2,000 records a
  batch (``Sforce-Query-Options: batchSize=200..2000`` may lower it; ``query_batch_size`` lowers it
  for tests, as the real server may), ``done``/``nextRecordsUrl`` paging over a snapshot taken at
  the first call; queryAll also returns deleted records (``IsDeleted = true``); a locator idle for
  15 minutes is gone (INVALID_QUERY_LOCATOR).
* ``sobjects/{type}/updated`` and ``/deleted`` (resources_getupdated.htm, resources_getdeleted.htm):
  ``start``/``end`` ISO 8601 with seconds ignored, at most 30 days back (INVALID_REPLICATION_DATE),
  ``latestDateCovered``; deletions also ``earliestDateAvailable`` (15 days, or later once the log
  was purged early).
* sObject Collections (resources_composite_sobjects_collections.htm): create/update/delete of up to
  200 records, ``allOrNone`` (false: per-record results in input order, with ``statusCode`` errors;
  true: any failure rolls back all, the others answering ALL_OR_NONE_OPERATION_ROLLED_BACK),
  retrieve by ids (GET ``ids``+``fields``, or POST up to 2,000), upsert by an external id field.
* Bulk API 2.0 query jobs (https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/query_create_job.htm,
  query_get_job_info.htm, query_get_job_results.htm): ``POST jobs/query`` ``{"operation":
  "query"|"queryAll", "query"}``, the job reported ``InProgress`` on the first poll and
  ``JobComplete`` after, results as CSV paged by ``maxRecords`` and the ``Sforce-Locator`` header
  (the string ``null`` after the last page), with ``Sforce-NumberOfRecords``.
* Limits (resources_limits.htm; "API Usage" header, headers_api_usage.htm): every response under
  ``/services/data`` carries ``Sforce-Limit-Info: api-usage=used/max`` for the rolling 24 hours;
  once ``api_limit`` is spent a call answers ``403 REQUEST_LIMIT_EXCEEDED`` "TotalRequests Limit
  exceeded." (not 429; there is no Retry-After). Injected rate-limit faults answer the
  concurrent-request flavour, "ConcurrentPerOrgLongTxn Limit exceeded.".
* Errors: a JSON array of ``{"message", "errorCode", "fields"?}`` (errorcodes.htm).
"""
from __future__ import annotations

import base64
import csv
import io
import itertools
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta

from ..faults import FaultConfig, FaultInjector, serve_fault
from ..limits import RollingWindow
from ..requestlog import RequestLog
from ..wsgi import BadJson, Request, dumps, respond
from . import soql
from .auth import Sessions, token_endpoint, userinfo
from .errors import ApiError, bad_json, not_found
from .generator import SeedOptions, generate
from .outbound import OutboundMessages
from .schema import OBJECTS, lookup
from .store import OrgState
from .values import FieldProblem, format_datetime, make_id, normalize_id, parse_datetime, render

VERSIONS = [("Winter '24", "59.0"), ("Spring '24", "60.0"), ("Summer '24", "61.0"), ("Winter '25", "62.0"),
            ("Spring '25", "63.0"), ("Summer '25", "64.0"), ("Winter '26", "65.0"), ("Spring '26", "66.0")]
VERSION_NUMBERS = {v for _, v in VERSIONS}
MAX_COLLECTION = 200
MAX_RETRIEVE = 2000
MAX_BATCH = 2000
LOCATOR_IDLE_SECONDS = 15 * 60
REPLICATION_DAYS = 30
# callables(method, raw_path, query, status, headers, body) run for every API response of every app
GLOBAL_RESPONSE_HOOKS: list = []


@dataclass
class SalesforceOptions(SeedOptions):
    """The seed's options (``SeedOptions``: counts, seed, same_modstamp), then the org's."""
    org_id: str = make_id("00D", 62)
    token: str | None = "00D-sandbox-access-token"   # a session that never expires (None: OAuth only)
    client_id: str = "3MVG9sandbox.consumer.key"
    client_secret: str = "sandbox-consumer-secret"
    refresh_token: str | None = "5Aep-sandbox-refresh-token"
    username: str = "integration@sandbox.example.org"
    session_seconds: float = 7200.0          # lifetime of sessions the token endpoint issues; 0 = never end
    api_limit: int = 100_000                 # DailyApiRequests Max (rolling 24 h); 0 = never refuse
    query_batch_size: int = MAX_BATCH
    late_commit_seconds: float = 0.0
    outbound_url: str | None = None
    outbound_time_scale: float = 0.01
    faults: dict = field(default_factory=dict)


class SalesforceApp:
    """WSGI callable; ``.state``, ``.sessions``, ``.outbound``, ``.faults`` and ``.log`` are public."""

    def __init__(self, options: SalesforceOptions):
        self.initial = replace(options, faults=dict(options.faults))
        self.options = options
        self.state = OrgState(options.org_id)
        self.sessions = Sessions(options.org_id)
        self.outbound = OutboundMessages(self.state)
        self.faults = FaultInjector(FaultConfig())
        self.usage = RollingWindow(options.api_limit, 86400.0)
        self.log = RequestLog()
        self.response_hooks: list = []
        self._locators: dict[str, dict] = {}
        self._jobs: dict[str, dict] = {}
        self._seq = itertools.count(1)

    # ----- WSGI ------------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        started = time.perf_counter()
        req = Request(environ)
        seg = req.segments
        if seg[:1] == ["_sandbox"]:
            from .admin import handle_admin
            return handle_admin(self, req, start_response)
        instance = f"{environ.get('wsgi.url_scheme', 'http')}://{req.header('host') or 'localhost'}"
        self.outbound.base_url = instance
        headers: dict = {}
        endpoint = f"{req.method} {req.path}"
        ctype = "application/json;charset=UTF-8"
        api = seg[:2] == ["services", "data"]
        try:
            if seg == ["services", "oauth2", "token"] and req.method == "POST":
                endpoint = "POST /services/oauth2/token"
                status, body = token_endpoint(self.sessions, self.options, req.body, req.header("content-type"),
                                              instance)
            elif seg == ["services", "oauth2", "userinfo"] and req.method == "GET":
                endpoint = "GET /services/oauth2/userinfo"
                self.sessions.check(req.header("authorization"))
                status, body = 200, userinfo(self.sessions, instance, self.options.username)
            elif api and len(seg) == 2 and req.method == "GET":
                endpoint = "GET /services/data"
                status, body = 200, [{"label": label, "url": f"/services/data/v{v}", "version": v}
                                     for label, v in VERSIONS]
            elif api:
                version = seg[2][1:] if seg[2].startswith("v") else ""
                if version not in VERSION_NUMBERS:
                    raise not_found()
                endpoint, handler, args = self._route(req.method, version, seg[3:])
                fault = serve_fault(self.faults, self.log, req, endpoint)
                if fault.kind == "error":
                    raise ApiError(fault.status, "SERVER_UNAVAILABLE" if fault.status == 503 else "UNKNOWN_EXCEPTION",
                                   "An unexpected error occurred. Please include this ErrorId if you contact "
                                   f"support: {next(self._seq)}-{fault.status} (sandbox)")
                self.sessions.check(req.header("authorization"))
                if fault.kind == "rate_limited":
                    raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.")
                if not self.usage.hit().allowed:
                    raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                status, body = handler(req, version, *args)
                headers.update(getattr(body, "headers", None) or {})
            else:
                raise not_found()
        except ApiError as exc:
            status, body = exc.status, exc.body()
            headers.update(exc.headers)
        except BadJson as exc:
            status, body = 400, bad_json(str(exc)).body()
        except FieldProblem as exc:
            status, body = 400, [{"message": exc.message, "errorCode": exc.code, "fields": exc.fields}]
        if api:
            used = self.usage.peek().used
            headers["Sforce-Limit-Info"] = f"api-usage={used}/{self.options.api_limit or 5_000_000}"
        self.log.record(req.method, endpoint, status, req.path, req.query_string,
                        (time.perf_counter() - started) * 1000)
        if isinstance(body, tuple):   # (bytes, content type): CSV results
            payload, ctype = body
        else:
            payload = b"" if body is None else dumps(body)
        header_list = list(headers.items())
        for hook in (*self.response_hooks, *GLOBAL_RESPONSE_HOOKS):
            hook(req.method, req.raw_path, req.query_string, status, header_list, payload)
        return respond(start_response, status, payload, header_list, content_type=ctype if payload else None)

    def _route(self, method: str, version: str, rest: list[str]):
        """(endpoint template, handler, args) or a 404/405."""
        n = len(rest)
        head = rest[0] if rest else ""
        if n == 0 and method == "GET":
            return "GET /services/data/vXX.X", self._resources, ()
        if head == "sobjects":
            if n == 1 and method == "GET":
                return "GET sobjects", self._describe_global, ()
            obj = lookup(rest[1]) if n > 1 else None
            if obj is None:
                raise not_found()
            name = obj.name
            if n == 2:
                if method == "GET":
                    return "GET sobjects/{type}", self._sobject_info, (name,)
                if method == "POST":
                    return "POST sobjects/{type}", self._create, (name,)
            if n == 3 and rest[2] == "describe" and method == "GET":
                return "GET sobjects/{type}/describe", self._describe, (name,)
            if n == 3 and rest[2] in ("updated", "deleted") and method == "GET":
                return f"GET sobjects/{{type}}/{rest[2]}", self._replication, (name, rest[2])
            if n == 3:
                handler = {"GET": self._get, "PATCH": self._update, "DELETE": self._delete}.get(method)
                if handler is not None:
                    return f"{method} sobjects/{{type}}/{{id}}", handler, (name, rest[2])
            if n == 4:
                if method == "PATCH":
                    return "PATCH sobjects/{type}/{field}/{value}", self._upsert, (name, rest[2], rest[3])
                if method == "GET":
                    return "GET sobjects/{type}/{field}/{value}", self._get_by, (name, rest[2], rest[3])
        if head in ("query", "queryAll") and method == "GET":
            if n == 1:
                return f"GET {head}", self._query, (head == "queryAll",)
            if n == 2:
                return f"GET {head}/{{locator}}", self._query_more, (rest[1],)
        if head == "composite" and n >= 2 and rest[1] == "sobjects":
            if n == 2 and method in ("POST", "PATCH", "DELETE"):
                return f"{method} composite/sobjects", self._collection, (method,)
            obj = lookup(rest[2]) if n > 2 else None
            if obj is None:
                raise not_found()
            if n == 3 and method in ("GET", "POST"):
                return f"{method} composite/sobjects/{{type}}", self._collection_retrieve, (obj.name,)
            if n == 4 and method == "PATCH":
                return "PATCH composite/sobjects/{type}/{field}", self._collection_upsert, (obj.name, rest[3])
        if head == "jobs" and n >= 2 and rest[1] == "query":
            if n == 2 and method == "POST":
                return "POST jobs/query", self._job_create, ()
            if n == 3 and method in ("GET", "DELETE"):
                return f"{method} jobs/query/{{id}}", self._job, (rest[2],)
            if n == 4 and rest[3] == "results" and method == "GET":
                return "GET jobs/query/{id}/results", self._job_results, (rest[2],)
        if head == "limits" and n == 1 and method == "GET":
            return "GET limits", self._limits, ()
        raise not_found()

    # ----- discovery & describe --------------------------------------------------------------
    def _resources(self, req, version):
        base = f"/services/data/v{version}"
        return 200, {name: f"{base}/{name}" for name in ("sobjects", "query", "queryAll", "limits", "composite",
                                                          "jobs/query")}

    def _describe_global(self, req, version):
        return 200, {"encoding": "UTF-8", "maxBatchSize": MAX_COLLECTION,
                     "sobjects": [o.summary(version) for o in OBJECTS.values()]}

    def _sobject_info(self, req, version, obj):
        with self.state.lock:
            recent = sorted(self.state.records[obj].values(), key=lambda r: r["LastModifiedDate"])[-5:]
            items = [self._render(obj, r, version, ["Id"]) for r in recent if not r["IsDeleted"]]
        return 200, {"objectDescribe": OBJECTS[obj].summary(version), "recentItems": items}

    def _describe(self, req, version, obj):
        return 200, OBJECTS[obj].describe(version)

    # ----- records ---------------------------------------------------------------------------
    def _render(self, obj: str, rec: dict, version: str, names: list[str] | None = None) -> dict:
        meta = OBJECTS[obj]
        out = {"attributes": {"type": obj, "url": f"/services/data/v{version}/sobjects/{obj}/{rec['Id']}"}}
        for name in names or [f.name for f in meta.fields]:
            out[name] = render(meta.field(name), rec.get(name))
        return out

    def _fields_arg(self, obj: str, raw: str | None) -> list[str] | None:
        if not raw:
            return None
        out = []
        for name in raw.split(","):
            f = OBJECTS[obj].field(name.strip())
            if f is None:
                raise ApiError(400, "INVALID_FIELD", f"No such column '{name.strip()}' on entity '{obj}'")
            out.append(f.name)
        return out

    def _get(self, req, version, obj, rid):
        with self.state.lock:
            rec = self.state.get(obj, rid)
            return 200, self._render(obj, rec, version, self._fields_arg(obj, req.arg("fields")))

    def _body(self, req) -> dict:
        body = req.json()
        if not isinstance(body, dict):
            raise bad_json("Can not deserialize SObject out of START_ARRAY token")
        return body

    def _create(self, req, version, obj):
        body = self._body(req)
        if any(k.lower() == "id" for k in body):
            raise ApiError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
        rec = self.state.create(obj, body)
        return 201, {"id": rec["Id"], "success": True, "errors": []}

    def _update(self, req, version, obj, rid):
        self.state.update(obj, rid, self._body(req))
        return 204, None

    def _delete(self, req, version, obj, rid):
        self.state.delete(obj, rid)
        return 204, None

    def _upsert(self, req, version, obj, field_name, value):
        rec, created = self.state.upsert(obj, field_name, value, self._body(req))
        return (201 if created else 200), {"id": rec["Id"], "success": True, "errors": [], "created": created}

    def _get_by(self, req, version, obj, field_name, value):
        f = OBJECTS[obj].field(field_name)
        if f is None or not f.external_id:
            raise not_found("Provided external ID field does not exist or is not accessible: " + field_name)
        with self.state.lock:
            found = self.state.find_by(obj, f.name, value)
            if not found:
                raise not_found()
            if len(found) > 1:
                raise ApiError(300, "MULTIPLE_CHOICES", "Multiple records match",
                               body=[f"/services/data/v{version}/sobjects/{obj}/{r['Id']}" for r in found])
            return 200, self._render(obj, found[0], version, self._fields_arg(obj, req.arg("fields")))

    # ----- query -----------------------------------------------------------------------------
    def _batch_size(self, req) -> int:
        size = self.options.query_batch_size or MAX_BATCH
        options = req.header("sforce-query-options") or ""
        for part in options.split(","):
            key, _, value = part.strip().partition("=")
            if key.lower() == "batchsize" and value.strip().isdigit():
                size = min(size, max(200, min(MAX_BATCH, int(value))))
        return size

    def _query(self, req, version, include_deleted: bool):
        text = req.arg("q")
        if text is None:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        q = soql.parse(text)
        with self.state.lock:
            rows = soql.run(q, list(self.state.records[q.obj.name].values()), include_deleted=include_deleted)
            if q.count_only:
                return 200, {"totalSize": len(rows), "done": True, "records": []}
            rendered = [self._render(q.obj.name, r, version, q.fields) for r in rows]
        locator = make_id("01g", next(self._seq))
        self._locators[locator] = {"rows": rendered, "touched": time.monotonic(), "version": version}
        return 200, self._page(locator, 0, self._batch_size(req))

    def _page(self, locator: str, start: int, size: int) -> dict:
        entry = self._locators[locator]
        entry["touched"] = time.monotonic()
        rows = entry["rows"]
        page = rows[start:start + size]
        out = {"totalSize": len(rows), "done": start + size >= len(rows), "records": page}
        if out["done"]:
            self._locators.pop(locator, None)
        else:
            out["nextRecordsUrl"] = f"/services/data/v{entry['version']}/query/{locator}-{start + size}"
        return out

    def _query_more(self, req, version, token):
        locator, _, start = token.rpartition("-")
        cutoff = time.monotonic() - LOCATOR_IDLE_SECONDS
        for key in [k for k, v in self._locators.items() if v["touched"] < cutoff]:
            self._locators.pop(key, None)
        if locator not in self._locators or not start.isdigit():
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return 200, self._page(locator, int(start), self._batch_size(req))

    # ----- replication -----------------------------------------------------------------------
    def _window(self, req) -> tuple[datetime, datetime]:
        out = []
        for name in ("start", "end"):
            raw = req.arg(name)
            if not raw:
                raise ApiError(400, "MISSING_ARGUMENT", f"{name} parameter is required")
            try:
                out.append(parse_datetime(raw).replace(second=0, microsecond=0))
            except ValueError:
                raise ApiError(400, "INVALID_REPLICATION_DATE", f"{name}: invalid date format {raw[:40]}") from None
        start, end = out
        now = self.state.clock.now()
        if start > end:
            raise ApiError(400, "INVALID_REPLICATION_DATE", "startDate must chronologically precede endDate")
        if start < now - timedelta(days=REPLICATION_DAYS):
            raise ApiError(400, "INVALID_REPLICATION_DATE", f"startDate can not be more than {REPLICATION_DAYS} days "
                           "ago")
        return start, min(end, now.replace(second=0, microsecond=0))

    def _replication(self, req, version, obj, which):
        start, end = self._window(req)
        with self.state.lock:
            if which == "updated":
                ids = [r["Id"] for r in self.state.records[obj].values()
                       if not r["IsDeleted"] and start <= r["SystemModstamp"] < end]
                return 200, {"ids": ids, "latestDateCovered": format_datetime(end)}
            deleted = [{"id": rid, "deletedDate": format_datetime(when)} for o, rid, when in self.state.delete_log
                       if o == obj and start <= when < end]
            return 200, {"deletedRecords": deleted,
                         "earliestDateAvailable": format_datetime(self.state.earliest_delete_available()),
                         "latestDateCovered": format_datetime(end)}

    # ----- sObject Collections ---------------------------------------------------------------
    def _collection_body(self, req) -> tuple[bool, list]:
        body = self._body(req)
        records = body.get("records")
        if not isinstance(records, list):
            raise bad_json("records: expected an array")
        if len(records) > MAX_COLLECTION:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {MAX_COLLECTION} "
                           "records into this call")
        return bool(body.get("allOrNone", False)), records

    @staticmethod
    def _failed(problem) -> dict:
        return {"success": False, "errors": [problem.as_error() if isinstance(problem, FieldProblem) else
                                             {"statusCode": problem.code, "message": problem.message,
                                              "fields": problem.fields or []}]}

    def _write_all(self, all_or_none: bool, items: list, write) -> list[dict]:
        """Run ``write(item)`` per item: (result dict) or FieldProblem/ApiError. With allOrNone,
        one failure undoes the writes already made (state restored from a copy)."""
        results, failed = [], False
        with self.state.lock:
            snapshot = None
            if all_or_none:
                snapshot = ({o: {i: dict(r) for i, r in rows.items()} for o, rows in self.state.records.items()},
                            list(self.state.delete_log))
            for item in items:
                try:
                    results.append(write(item))
                except (FieldProblem, ApiError) as exc:
                    failed = True
                    results.append(self._failed(exc))
            if failed and all_or_none:
                self.state.records, self.state.delete_log = snapshot
                rolled = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                          "message": "Record rolled back because not all records were valid and the request was "
                                     "using AllOrNone header", "fields": []}
                results = [r if not r["success"] else {"id": r.get("id"), "success": False, "errors": [rolled]}
                           for r in results]
        return results

    def _record_type(self, item) -> str:
        if not isinstance(item, dict):
            raise FieldProblem("INVALID_FIELD", "a record must be a JSON object", [])
        obj = lookup(str((item.get("attributes") or {}).get("type") or ""))
        if obj is None:
            raise FieldProblem("INVALID_TYPE", "sObject type not specified or not supported", [])
        return obj.name

    def _collection(self, req, version, method):
        if method == "DELETE":
            ids = [i for i in (req.arg("ids") or "").split(",") if i]
            if len(ids) > MAX_COLLECTION:
                raise ApiError(400, "EXCEEDED_ID_LIMIT", "cannot delete more than 200 records in one call")

            def delete(rid):
                obj = lookup(_OBJECT_BY_PREFIX.get(rid[:3], "")) if normalize_id(rid) else None
                if obj is None:
                    raise FieldProblem("MALFORMED_ID", f"malformed id {rid}", [])
                self.state.delete(obj.name, rid)
                return {"id": normalize_id(rid), "success": True, "errors": []}
            return 200, self._write_all(req.arg("allOrNone") == "true", ids, delete)
        all_or_none, records = self._collection_body(req)

        def write(item):
            obj = self._record_type(item)
            body = {k: v for k, v in item.items() if k != "attributes"}
            if method == "POST":
                if any(k.lower() == "id" for k in body):
                    raise FieldProblem("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
                return {"id": self.state.create(obj, body)["Id"], "success": True, "errors": []}
            rid = next((v for k, v in body.items() if k.lower() == "id"), None)
            if not rid:
                raise FieldProblem("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
            rec = self.state.update(obj, str(rid), {k: v for k, v in body.items() if k.lower() != "id"})
            return {"id": rec["Id"], "success": True, "errors": []}
        return 200, self._write_all(all_or_none, records, write)

    def _collection_retrieve(self, req, version, obj):
        if req.method == "GET":
            ids = [i for i in (req.arg("ids") or "").split(",") if i]
            names = self._fields_arg(obj, req.arg("fields"))
        else:
            body = self._body(req)
            ids, names = body.get("ids") or [], self._fields_arg(obj, ",".join(body.get("fields") or []))
        if not names:
            raise ApiError(400, "MISSING_ARGUMENT", "fields parameter is required")
        if len(ids) > (MAX_RETRIEVE if req.method == "POST" else 800):
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "too many ids")
        out = []
        with self.state.lock:
            for rid in ids:
                rec = self.state.records[obj].get(normalize_id(str(rid)) or "")
                out.append(None if rec is None or rec["IsDeleted"] else self._render(obj, rec, version, names))
        return 200, out

    def _collection_upsert(self, req, version, obj, field_name):
        all_or_none, records = self._collection_body(req)
        f = OBJECTS[obj].field(field_name)
        if f is None or not f.external_id:
            raise not_found("Provided external ID field does not exist or is not accessible: " + field_name)

        def upsert(item):
            if self._record_type(item) != obj:
                raise FieldProblem("INVALID_TYPE", f"all records must be of type {obj}", [])
            body = {k: v for k, v in item.items() if k != "attributes"}
            value = next((v for k, v in body.items() if k.lower() == f.name.lower()), None)
            if value in (None, ""):
                raise FieldProblem("MISSING_ARGUMENT", f"{f.name} not specified", [f.name])
            rec, created = self.state.upsert(obj, f.name, str(value), body)
            return {"id": rec["Id"], "success": True, "errors": [], "created": created}
        return 200, self._write_all(all_or_none, records, upsert)

    # ----- Bulk API 2.0 query jobs -----------------------------------------------------------
    def _job_info(self, job: dict) -> dict:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    def _job_create(self, req, version):
        body = self._body(req)
        operation = body.get("operation")
        if operation not in ("query", "queryAll"):
            raise ApiError(400, "INVALIDJOB", "InvalidJob : operation must be query or queryAll")
        q = soql.parse(str(body.get("query") or ""))
        if q.count_only:
            raise ApiError(400, "INVALIDJOB", "InvalidJob : Aggregate queries are not supported")
        with self.state.lock:
            rows = soql.run(q, list(self.state.records[q.obj.name].values()), include_deleted=operation == "queryAll")
            meta = q.obj
            csv_rows = [[_csv_value(meta.field(n), r.get(n)) for n in q.fields] for r in rows]
        now = format_datetime(self.state.clock.now())
        job_id = make_id("750", next(self._seq))
        self._jobs[job_id] = {"id": job_id, "operation": operation, "object": q.obj.name,
                              "createdById": make_id("005", 1), "createdDate": now, "systemModstamp": now,
                              "state": "UploadComplete", "concurrencyMode": "Parallel", "contentType": "CSV",
                              "apiVersion": float(version), "lineEnding": "LF", "columnDelimiter": "COMMA",
                              "_header": q.fields, "_rows": csv_rows, "_polls": 0}
        return 200, self._job_info(self._jobs[job_id])

    def _job(self, req, version, job_id):
        job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if req.method == "DELETE":
            self._jobs.pop(job_id, None)
            return 204, None
        job["_polls"] += 1
        job["state"] = "InProgress" if job["_polls"] == 1 else "JobComplete"
        info = self._job_info(job)
        if job["state"] == "JobComplete":
            info.update(numberRecordsProcessed=len(job["_rows"]), retries=0, totalProcessingTime=len(job["_rows"]))
        return 200, info

    def _job_results(self, req, version, job_id):
        job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if job["state"] != "JobComplete":
            raise ApiError(400, "INVALIDJOB", "InvalidJob : the job is not complete yet")
        start = 0
        locator = req.arg("locator")
        if locator:
            try:
                start = int(base64.b64decode(locator).decode())
            except (ValueError, UnicodeDecodeError):
                raise ApiError(400, "INVALIDLOCATOR", "Invalid locator") from None
        raw_max = req.arg("maxRecords")
        size = int(raw_max) if raw_max and raw_max.isdigit() and int(raw_max) > 0 else len(job["_rows"]) or 1
        page = job["_rows"][start:start + size]
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(job["_header"])
        writer.writerows(page)
        nxt = start + size
        raise_headers = {"Sforce-Locator": base64.b64encode(str(nxt).encode()).decode() if nxt < len(job["_rows"])
                         else "null", "Sforce-NumberOfRecords": str(len(page))}
        return 200, _Csv(out.getvalue().encode("utf-8"), raise_headers)

    # ----- limits ----------------------------------------------------------------------------
    def _limits(self, req, version):
        used = self.usage.peek().used
        top = self.options.api_limit or 5_000_000
        return 200, {"DailyApiRequests": {"Max": top, "Remaining": max(0, top - used)},
                     "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
                     "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000 - len(self._jobs)},
                     "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
                     "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200}}

    # ----- lifecycle -------------------------------------------------------------------------
    def seed(self, reset: bool = True, **options) -> dict:
        known = {f.name for f in fields(SeedOptions)}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown seed options: {sorted(unknown)}")
        opts = SeedOptions(**{k: getattr(self.options, k) for k in known})
        for key, value in options.items():
            setattr(opts, key, value)
        if reset:
            self.state.reset()
            self.state.late_commit_seconds = self.options.late_commit_seconds
        return generate(self.state, opts)

    def reset(self) -> None:
        self.options = replace(self.initial, faults=dict(self.initial.faults))
        self.outbound.reset()
        self.sessions.reset()
        self._locators.clear()
        self._jobs.clear()
        self.faults.reset(self.options.faults)
        self.usage.reset()
        self.usage.configure(limit=self.options.api_limit)
        self.log.reset()
        self._install_credentials()
        self.outbound.configure(url=self.options.outbound_url, time_scale=self.options.outbound_time_scale,
                                objects=list(OBJECTS), fields={}, enabled=True, duplicate_rate=0.0,
                                out_of_order=False)
        self.seed()

    def _install_credentials(self) -> None:
        o = self.options
        if o.token:
            with self.sessions.lock:
                self.sessions.access[o.token] = None
        if o.refresh_token:
            with self.sessions.lock:
                self.sessions.refresh.add(o.refresh_token)

    def configure(self, **changes) -> dict:
        fault_changes = changes.pop("faults", None) or {}
        outbound = changes.pop("outbound", None) or {}
        unknown = set(changes) - {f.name for f in fields(SalesforceOptions)}
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        for key, value in changes.items():
            setattr(self.options, key, value)
        self.usage.configure(limit=self.options.api_limit)
        self.state.late_commit_seconds = self.options.late_commit_seconds
        self._install_credentials()
        if "outbound_url" in changes:
            outbound["url"] = changes["outbound_url"]
        if outbound:
            self.outbound.configure(**outbound)
        self.options.faults = self.faults.configure_saved(self.options.faults, fault_changes)
        return self.config_snapshot()

    def config_snapshot(self) -> dict:
        data = asdict(self.options)
        for secret in ("token", "client_secret", "refresh_token"):
            data.pop(secret, None)
        data["faults"] = self.faults.snapshot()
        data["outbound"] = self.outbound.settings()
        data["api_usage"] = self.usage.peek().used
        return data

    def close(self) -> None:
        self.outbound.stop()


class _Csv(tuple):
    """A CSV body with its extra headers (Bulk API results)."""

    def __new__(cls, data: bytes, headers: dict):
        obj = super().__new__(cls, (data, "text/csv"))
        obj.headers = headers
        return obj


def _csv_value(f, value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if f.type == "datetime":
        return format_datetime(value).replace("+0000", "Z")
    if f.type == "date":
        return value.isoformat()
    if isinstance(value, float) and value.is_integer() and f.type == "int":
        return str(int(value))
    return str(value)


_OBJECT_BY_PREFIX = {o.key_prefix: o.name for o in OBJECTS.values()}


def create_app(options: SalesforceOptions | None = None, **overrides) -> SalesforceApp:
    """The Salesforce sandbox WSGI app, seeded; keyword overrides set any ``SalesforceOptions`` field."""
    opts = replace(options or SalesforceOptions(), **overrides)
    opts.faults = dict(opts.faults or {})
    app = SalesforceApp(opts)
    app.reset()
    return app


__all__ = ["GLOBAL_RESPONSE_HOOKS", "SalesforceApp", "SalesforceOptions", "create_app"]
