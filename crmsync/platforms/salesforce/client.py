"""Salesforce REST API client, over the one request loop of `crmsync.platforms.http.CRMClient`.

Salesforce's parts of the loop: a session from the refresh-token or JWT bearer flow (`auth`),
refreshed once when a call answers 401 INVALID_SESSION_ID; every call goes to the session's
`instance_url`, not to the login host; answers become typed errors in `errors.error_for`; every
answer's `Sforce-Limit-Info` feeds the org's daily bucket (`limits`). A spent allocation (403
REQUEST_LIMIT_EXCEEDED, never a 429) parks every worker of the org until the bucket resets: the
loop penalizes the daily bucket, and the call raises `RateLimited` with `resume_at`.

Retries: 5xx and dropped connections are retried only for calls that are safe to repeat: reads,
updates, deletes and upserts by external id; never a plain create.
"""
from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from crmsync.platforms.errors import AuthenticationError, NotFound, PlatformError, ValidationError
from crmsync.platforms.http import Call, CRMClient
from crmsync.ratelimit import Observation

from . import limits as salesforce_limits
from .auth import SalesforceAuth
from .errors import PLATFORM, error_code, error_for

log = logging.getLogger(__name__)

API_VERSION = "62.0"
COLLECTION_LIMIT = 200        # sObject Collections: records per call
RETRIEVE_LIMIT = 2000         # sObject Collections retrieve (POST): ids per call


class SalesforceClient(CRMClient):
    """One Salesforce org. `credentials` as `SalesforceAuth` reads them; `limits` replace the
    default allocation whole (an org may run with the budget off). The budget key is the org id,
    a hash of the credential until it is known."""
    platform = PLATFORM
    default_max_attempts = 4

    def __init__(self, credentials: dict, *, base_url: str | None = None, budget: Any = None,
                 account_id: str | None = None, wait: bool = True,
                 save_credentials: Callable[[dict], None] | None = None, redis_client: Any = None,
                 limits: dict | None = None, max_wait: float = 30.0, timeout: float = 60.0,
                 max_attempts: int | None = None, session: requests.Session | None = None,
                 api_version: str | None = None):
        self.auth = SalesforceAuth(credentials, base_url=base_url, redis_client=redis_client,
                                   save_credentials=save_credentials)
        if account_id and not self.auth.org_id:
            self.auth.org_id = account_id
        super().__init__(self.auth.instance_url or self.auth.login_url, budget=budget, wait=wait,
                         limits=limits if limits is not None else salesforce_limits.default_limits(),
                         max_wait=max_wait, timeout=timeout, max_attempts=max_attempts, session=session)
        self.api_version = str(api_version or credentials.get("api_version") or API_VERSION).lstrip("v")
        self.session.headers.update({"Accept": "application/json", "User-Agent": "crmsync/0.1"})
        self.api_usage: tuple[int, int] | None = None   # (used, max) the last answer reported

    def __repr__(self) -> str:
        return f"SalesforceClient(instance_url={self.auth.instance_url!r}, org={self.auth.org_id!r})"

    # ------------------------------------------------------------------ the request loop's hooks
    @property
    def budget_account(self) -> str:
        return self.auth.key

    def url_for(self, call: Call) -> str:
        """Paths below /services/ as they are (nextRecordsUrl, OAuth userinfo), others below
        /services/data/vXX.X, all on the session's instance (the token answer names it)."""
        if call.path.startswith(("http://", "https://")):
            return call.path
        if not self.auth.instance_url:
            self.auth.header(self.session)
        base = self.auth.instance_url or self.auth.login_url
        if call.path.startswith("/services/"):
            return base + call.path
        return f"{base}/services/data/v{self.api_version}{call.path}"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": self.auth.header(self.session)}

    def refresh_auth(self, response: requests.Response) -> bool:
        # Only an ended session is cured by a new one; any other 401 is an AuthenticationError.
        if error_code(_json(response)) != "INVALID_SESSION_ID":
            return False
        return self.auth.force_refresh(self.session, response.request.headers.get("Authorization") or "")

    def observations(self, response: requests.Response, call: Call) -> dict[str, Observation]:
        usage = salesforce_limits.api_usage(response.headers.get("Sforce-Limit-Info"))
        if usage is not None:
            self.api_usage = usage
        return salesforce_limits.observations(response.headers, call.kind)

    def error_for(self, response: requests.Response, call: Call) -> PlatformError:
        return error_for(response.status_code, _json(response), where=call.where, reason=response.reason,
                         entity=call.entity, external_id=call.external_id)

    def decode(self, response: requests.Response, call: Call) -> Any:
        # Bulk API 2.0 results are CSV pages whose Sforce-Locator header names the next: the caller
        # reads both from the answer itself.
        if response.headers.get("Content-Type", "").startswith("text/csv"):
            return response
        return super().decode(response, call)

    # ------------------------------------------------------------------ identity & metadata
    def org_id(self) -> str:
        if self.auth.org_id:
            return self.auth.org_id
        info = self.request("GET", "/services/oauth2/userinfo")
        if not info.get("organization_id"):
            raise AuthenticationError("userinfo did not name an organization", platform=PLATFORM)
        self.auth.org_id = str(info["organization_id"])
        return self.auth.org_id

    def describe(self, obj: str) -> dict:
        return self.request("GET", f"/sobjects/{obj}/describe", entity=obj)

    # ------------------------------------------------------------------ reading
    def query(self, soql: str, *, include_deleted: bool = False) -> dict:
        return self.request("GET", "/queryAll" if include_deleted else "/query", params={"q": soql})

    def count(self, soql: str) -> int:
        """`SELECT COUNT() FROM ...`: its totalSize (one request, no records)."""
        return int(self.query(soql).get("totalSize") or 0)

    def query_more(self, next_records_url: str) -> dict:
        return self.request("GET", next_records_url)

    def query_records(self, soql: str, *, include_deleted: bool = False) -> list[dict]:
        """Every record of a query, following nextRecordsUrl until done."""
        body = self.query(soql, include_deleted=include_deleted)
        records = list(body.get("records") or [])
        while not body.get("done", True) and body.get("nextRecordsUrl"):
            body = self.query_more(body["nextRecordsUrl"])
            records += body.get("records") or []
        return records

    def retrieve(self, obj: str, ids: list[str], fields: list[str]) -> list[dict]:
        """The records among `ids` that exist (sObject Collections retrieve, ≤2,000 per call)."""
        out: list[dict] = []
        for start in range(0, len(ids), RETRIEVE_LIMIT):
            chunk = ids[start:start + RETRIEVE_LIMIT]
            found = self.request("POST", f"/composite/sobjects/{obj}", json={"ids": chunk, "fields": fields},
                                 safe=True, entity=obj)
            out += [r for r in found or [] if r]
        return out

    def get_by_external_id(self, obj: str, field: str, value: str) -> dict | None:
        try:
            return self.request("GET", f"/sobjects/{obj}/{field}/{quote(str(value), safe='')}", entity=obj)
        except NotFound:
            return None

    def updated(self, obj: str, start: datetime, end: datetime) -> dict:
        return self.request("GET", f"/sobjects/{obj}/updated/", entity=obj,
                            params={"start": _iso(start), "end": _iso(end)})

    def bulk_query(self, soql: str, *, include_deleted: bool = False, page_records: int = 50_000,
                   poll_seconds: float = 1.0) -> Iterator[dict]:
        """Rows of a Bulk API 2.0 query job: every page of `bulk_results`. Values arrive as text
        ('' for null)."""
        job_id = self.start_bulk_query(soql, include_deleted=include_deleted, poll_seconds=poll_seconds)
        locator: str | None = None
        while True:
            rows, locator = self.bulk_results(job_id, locator, max_records=page_records)
            yield from rows
            if locator is None:
                return

    def start_bulk_query(self, soql: str, *, include_deleted: bool = False, poll_seconds: float = 2.0) -> str:
        """A Bulk API 2.0 query job (query_create_job.htm), waited for until JobComplete: its id.
        Its results stay readable, page by page, for days: a unit that dies re-reads its page.
        Polled after 0.25 s, then twice as long each time up to `poll_seconds`: a small job is
        done at once, a big one takes minutes, and each poll is an API request."""
        job = self.request("POST", "/jobs/query", json={"operation": "queryAll" if include_deleted else "query",
                                                        "query": soql}, safe=True)
        wait = min(0.25, poll_seconds)
        while job.get("state") not in ("JobComplete", "Failed", "Aborted"):
            time.sleep(wait)     # UploadComplete and InProgress alike: every poll is a request
            wait = min(wait * 2, poll_seconds)
            job = self.request("GET", f"/jobs/query/{job['id']}")
        if job["state"] != "JobComplete":
            raise ValidationError(self.hide_credentials(f"bulk query job {job['state']}: {job.get('errorMessage') or ''}")[:300],
                                  platform=PLATFORM)
        return str(job["id"])

    def bulk_results(self, job_id: str, locator: str | None = None, *, max_records: int = 50_000
                     ) -> tuple[list[dict], str | None]:
        """One page of a completed job's rows (CSV, text values) and the locator of the next, None
        after the last (query_get_job_results.htm: `Sforce-Locator` says "null")."""
        params = {"maxRecords": max(1, int(max_records)), **({"locator": locator} if locator else {})}
        resp = self.request("GET", f"/jobs/query/{job_id}/results", params=params)
        rows = list(csv.DictReader(io.StringIO(resp.text)))
        following = resp.headers.get("Sforce-Locator")
        return rows, (None if following in (None, "", "null") else following)

    # ------------------------------------------------------------------ writing (sObject Collections)
    def collection_create(self, records: list[dict]) -> list[dict]:
        return self._collection("POST", "/composite/sobjects", records, safe=False)

    def collection_update(self, records: list[dict]) -> list[dict]:
        return self._collection("PATCH", "/composite/sobjects", records, safe=True)

    def collection_upsert(self, obj: str, field: str, records: list[dict]) -> list[dict]:
        """Upsert by an external id field: safe to repeat, the value finds what a lost answer made."""
        return self._collection("PATCH", f"/composite/sobjects/{obj}/{field}", records, safe=True)

    def _collection(self, method: str, path: str, records: list[dict], *, safe: bool) -> list[dict]:
        out: list[dict] = []
        for start in range(0, len(records), COLLECTION_LIMIT):
            chunk = records[start:start + COLLECTION_LIMIT]
            results = self.request(method, path, json={"allOrNone": False, "records": chunk}, safe=safe)
            out += self._masked(results)
        return out

    def _masked(self, results: Any) -> list[dict]:
        """An sObject Collections answer with each record's error messages masked: they are
        Salesforce's words in a 2xx answer, which the request loop does not mask, and a token
        echoed there would reach the job's errors. Masked before `record_error` cuts them short."""
        out = list(results or [])
        for result in out:
            for error in (result.get("errors") or []) if isinstance(result, dict) else []:
                if isinstance(error, dict) and error.get("message"):
                    error["message"] = self.hide_credentials(str(error["message"]))
        return out

    def collection_delete(self, ids: list[str]) -> list[dict]:
        out: list[dict] = []
        for start in range(0, len(ids), COLLECTION_LIMIT):
            chunk = ids[start:start + COLLECTION_LIMIT]
            out += self._masked(self.request("DELETE", "/composite/sobjects",
                                             params={"ids": ",".join(chunk), "allOrNone": "false"}))
        return out


# ---------------------------------------------------------------------- helpers
def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _iso(value: datetime) -> str:
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
