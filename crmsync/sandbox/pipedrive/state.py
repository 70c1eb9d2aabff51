"""The in-memory Pipedrive account: company, users, pipelines and stages, field catalogue, activity
types, the four v2 entities, webhooks and tokens. Every read and write goes through one lock.

Writes produce ``ChangeEvent``s that subscribers (the webhook sender) receive in commit order while
the lock is held, so they must only enqueue.
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .entities import ENTITIES, build_row
from .errors import BadRequest, NotFound, Unprocessable
from .fields import FieldCatalog
from .tables import EntityTable
from .timefmt import rfc3339, v1_time

PURGE_AFTER = 30 * 86400  # soft-deleted records are purged after 30 days
MAX_WEBHOOKS_PER_USER = 40
DEFAULT_API_TOKEN = hashlib.sha1(b"crmsync-sandbox-pipedrive").hexdigest()
DEFAULT_COMPANY_ID = 7788
# Creation time of the account's own objects (users, pipelines, fields): fixed so a seed reproduces.
ACCOUNT_CREATED = 1704067200  # 2024-01-01T00:00:00Z


class Clock:
    """Wall clock plus an offset the admin API can move forward (time travel for purge/budget tests)."""

    def __init__(self):
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


@dataclass(frozen=True)
class ChangeEvent:
    action: str               # create | change | delete
    entity: str               # person | organization | deal | activity
    entity_id: int
    data: dict | None         # current state (None on delete)
    previous: dict | None     # v2: changed fields only; None on create; last state on delete
    previous_full: dict | None  # the whole previous row (v1 payloads need it)
    user_id: int
    change_source: str        # api | app
    timestamp: float
    merged_to_id: int | None = None
    merged_from_id: int | None = None


@dataclass
class ListQuery:
    sort_by: str = "id"
    descending: bool = False
    after: tuple | None = None        # cursor position (key, id)
    limit: int = 100
    updated_since: int | None = None
    updated_until: int | None = None
    ids: set | None = None
    equals: dict | None = None        # field -> required value (owner_id, org_id, deal_id, ...)
    statuses: set | None = None       # deals: open/won/lost/deleted
    archived: bool = False            # /deals/archived
    done: bool | None = None          # activities


def encode_cursor(sort_by: str, descending: bool, key: tuple) -> str:
    raw = json.dumps({"field": sort_by, "fieldValue": key[0], "sortDirection": "desc" if descending else "asc",
                      "id": key[1]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort_by: str, descending: bool) -> tuple:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        key = (raw["fieldValue"], int(raw["id"]))
        field, direction = raw["field"], raw["sortDirection"]
    except (ValueError, KeyError, TypeError):
        raise BadRequest("Invalid cursor") from None
    if field != sort_by or direction != ("desc" if descending else "asc"):
        raise BadRequest("The cursor was issued for a different sort_by/sort_direction")
    return key


class PipedriveState:
    """One fake Pipedrive company account. Thread-safe; see module docstring."""

    def __init__(self, company_id: int = DEFAULT_COMPANY_ID, company_name: str = "Sandbox Company",
                 api_tokens: dict[str, int] | None = None, currency: str = "EUR", clock: Clock | None = None):
        self.lock = threading.RLock()
        self.clock = clock or Clock()
        self.company = {"id": company_id, "name": company_name, "domain": f"sandbox-{company_id}",
                        "country": "EE", "industry": "Software", "currency": currency}
        self.api_tokens: dict[str, int] = dict(api_tokens or {DEFAULT_API_TOKEN: 1})
        self.oauth_clients: dict[str, str] = {"sandbox-client": "sandbox-secret"}
        self.access_tokens: dict[str, tuple[int, float]] = {}   # token -> (user_id, expires_at)
        self.refresh_tokens: dict[str, int] = {}
        self._listeners: list[Callable[[ChangeEvent], None]] = []
        # (entity, id) -> (row, its JSON): valid while that row object is still the stored one
        self.encoded: dict[tuple[str, int], tuple[dict, bytes]] = {}
        self.reset()

    # ----- account ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to an empty account (no persons/orgs/deals/activities/webhooks); tokens stay."""
        with self.lock:
            cid = self.company["id"]
            self.users = [self._user(1, "Mara Ots", "mara@sandbox.test", admin=True),
                          self._user(2, "Jaan Kask", "jaan@sandbox.test"),
                          self._user(3, "Liis Tamm", "liis@sandbox.test")]
            self.users_by_id = {u["id"]: u for u in self.users}
            t = rfc3339(ACCOUNT_CREATED)
            self.pipelines = {1: {"id": 1, "name": "Sales", "order_nr": 1, "is_selected": True, "is_deleted": False,
                                  "is_deal_probability_enabled": False, "add_time": t, "update_time": t},
                              2: {"id": 2, "name": "Renewals", "order_nr": 2, "is_selected": False,
                                  "is_deleted": False, "is_deal_probability_enabled": True,
                                  "add_time": t, "update_time": t}}
            stage_names = {1: [("Qualified", 10), ("Contact made", 20), ("Demo scheduled", 40),
                               ("Proposal made", 60), ("Negotiations started", 80)],
                           2: [("Renewal due", 50), ("Renewal quoted", 75), ("Renewal signed", 90)]}
            self.stages = {}
            sid = 1
            for pid, names in stage_names.items():
                for order, (name, prob) in enumerate(names, start=1):
                    self.stages[sid] = {"id": sid, "order_nr": order, "name": name, "is_deleted": False,
                                        "deal_probability": prob, "pipeline_id": pid, "is_deal_rot_enabled": False,
                                        "days_to_rotten": None, "add_time": t, "update_time": t}
                    sid += 1
            self.activity_types = [self._activity_type(i, name, key)
                                   for i, (name, key) in enumerate([("Call", "call"), ("Meeting", "meeting"),
                                                                    ("Task", "task"), ("Deadline", "deadline"),
                                                                    ("Email", "email"), ("Lunch", "lunch")], 1)]
            self.fields = FieldCatalog.build(cid, ACCOUNT_CREATED)
            self.tables = {e: EntityTable(e) for e in ENTITIES}
            self.webhooks: dict[int, dict] = {}
            self.next_webhook_id = 1
            self.encoded = {}

    def add_custom_field(self, entity: str, name: str, field_type: str, labels: list[str] | None):
        with self.lock:
            return self.fields.add(entity, name, field_type, labels, int(self.clock.now()))

    def _user(self, uid: int, name: str, email: str, admin: bool = False) -> dict:
        t = v1_time(ACCOUNT_CREATED)
        return {"id": uid, "name": name, "default_currency": self.company["currency"], "locale": "en_US",
                "lang": 1, "email": email, "phone": None, "activated": True, "last_login": t, "created": t,
                "modified": None, "has_created_company": uid == 1,
                "access": [{"app": "sales", "admin": admin, "permission_set_id": f"set-{uid}"}],
                "active_flag": True, "timezone_name": "Europe/Tallinn", "timezone_offset": "+02:00",
                "role_id": 1, "icon_url": None, "is_you": False, "is_deleted": False}

    def _activity_type(self, tid: int, name: str, key: str) -> dict:
        t = v1_time(ACCOUNT_CREATED)
        return {"id": tid, "name": name, "icon_key": key, "color": None, "order_nr": tid, "key_string": key,
                "active_flag": True, "is_custom_flag": False, "add_time": t, "update_time": t}

    def activity_type_keys(self) -> set[str]:
        return {t["key_string"] for t in self.activity_types if t["active_flag"]}

    def activity_type_name(self, key: str) -> str:
        return next((t["name"] for t in self.activity_types if t["key_string"] == key), key.capitalize())

    def default_pipeline_id(self) -> int:
        return min(p["id"] for p in self.pipelines.values() if not p["is_deleted"])

    def stages_of(self, pipeline_id: int) -> list[dict]:
        return sorted((s for s in self.stages.values() if s["pipeline_id"] == pipeline_id and not s["is_deleted"]),
                      key=lambda s: s["order_nr"])

    # ----- auth ------------------------------------------------------------------------------
    def user_for_api_token(self, token: str) -> int | None:
        return self.api_tokens.get(token)

    def user_for_access_token(self, token: str) -> int | None:
        entry = self.access_tokens.get(token)
        if entry is None or entry[1] <= self.clock.now():
            return None
        return entry[0]

    def issue_oauth_tokens(self, user_id: int = 1, expires_in: int = 3600,
                           refresh_token: str | None = None) -> dict:
        """Mint an access token (and a refresh token unless one is being used), as /oauth/token does."""
        with self.lock:
            access = f"v1u:{secrets.token_urlsafe(48)}"
            self.access_tokens[access] = (user_id, self.clock.now() + expires_in)
            if refresh_token is None:
                refresh_token = f"{self.company['id']}:{user_id}:{secrets.token_hex(20)}"
            self.refresh_tokens[refresh_token] = user_id
            return {"access_token": access, "token_type": "Bearer", "expires_in": expires_in - 1,
                    "refresh_token": refresh_token, "scope": "base,deals:full,contacts:full,activities:full,admin",
                    "api_domain": f"https://{self.company['domain']}.pipedrive.com"}

    # ----- subscribers -----------------------------------------------------------------------
    def subscribe(self, listener: Callable[[ChangeEvent], None]) -> None:
        with self.lock:
            self._listeners.append(listener)

    def _emit(self, event: ChangeEvent) -> None:
        for listener in self._listeners:
            listener(event)

    # ----- entity reads ----------------------------------------------------------------------
    def get(self, entity: str, row_id: int) -> dict:
        with self.lock:
            self._purge(entity)
            row = self.tables[entity].rows.get(row_id)
        if row is None:
            raise NotFound(f"{entity.capitalize()} not found")
        return row

    def _purge(self, entity: str) -> None:
        table = self.tables[entity]
        if not table.deleted:
            return
        cutoff = self.clock.now() - PURGE_AFTER
        for row_id in [i for i in table.deleted if table.times[i][1] < cutoff]:
            table.remove(row_id)

    def list(self, entity: str, q: ListQuery) -> tuple[list[dict], str | None]:
        """One page of rows in the query's order and the cursor of the next page (None at the end)."""
        with self.lock:
            self._purge(entity)
            table = self.tables[entity]
            times = table.times
            want_deleted = bool(q.statuses and "deleted" in q.statuses)
            live_statuses = (q.statuses - {"deleted"}) if q.statuses else None
            since, until, ids, equals, done = q.updated_since, q.updated_until, q.ids, q.equals, q.done
            archived = q.archived
            deleted_cutoff = self.clock.now() - PURGE_AFTER

            def keep(row: dict) -> bool:
                if row["is_deleted"]:
                    if not want_deleted or times[row["id"]][1] < deleted_cutoff:
                        return False
                elif q.statuses is not None and (not live_statuses or row["status"] not in live_statuses):
                    return False
                if entity == "deal" and row["is_archived"] != archived:
                    return False
                if since is not None or until is not None:
                    ts = times[row["id"]][1]
                    if (since is not None and ts < since) or (until is not None and ts >= until):
                        return False
                if ids is not None and row["id"] not in ids:
                    return False
                if equals:
                    for key, value in equals.items():
                        if key == "deal_id" and entity == "person":
                            deal = self.tables["deal"].rows.get(value)
                            if deal is None or deal["person_id"] != row["id"]:
                                return False
                        elif row.get(key) != value:
                            return False
                return done is None or row["done"] == done

            lower = upper = None
            if q.sort_by == "update_time":  # jump straight to the requested time range
                lower = (since, -1) if since is not None else None
                upper = (until, -1) if until is not None else None
            rows, last_key = table.page(q.sort_by, q.descending, q.after, q.limit, keep, lower, upper)
        cursor = encode_cursor(q.sort_by, q.descending, last_key) if last_key is not None else None
        return rows, cursor

    def counts(self) -> dict[str, int]:
        """Live (not deleted) records per entity."""
        with self.lock:
            return {e: len(t.rows) - len(t.deleted) for e, t in self.tables.items()}

    # ----- entity writes ---------------------------------------------------------------------
    def create(self, entity: str, body: dict, user_id: int = 1, source: str = "api") -> dict:
        with self.lock:
            now = int(self.clock.now())
            table = self.tables[entity]
            row, add_ts = build_row(self, entity, body, None, user_id, now)
            row["id"] = table.next_id
            add_ts = add_ts if add_ts is not None else now
            row["add_time"], row["update_time"] = rfc3339(add_ts), rfc3339(now)
            table.put(row, add_ts, now)
            self._emit(ChangeEvent("create", entity, row["id"], row, None, None, user_id, source, self.clock.now()))
            return row

    def update(self, entity: str, row_id: int, body: dict, user_id: int = 1, source: str = "api",
               merged_from_id: int | None = None) -> dict:
        with self.lock:
            table = self.tables[entity]
            current = self.get(entity, row_id)
            if current["is_deleted"]:
                raise NotFound(f"{entity.capitalize()} not found")
            now = int(self.clock.now())
            row, _ = build_row(self, entity, body, current, user_id, now)
            return self._store_change(table, current, row, now, user_id, source, merged_from_id=merged_from_id)

    def _store_change(self, table: EntityTable, current: dict, row: dict, now: int, user_id: int, source: str,
                      merged_from_id: int | None = None, force: bool = False) -> dict:
        changed = {k: v for k, v in current.items() if row.get(k) != v and k != "update_time"}
        if not changed and not force:
            return current  # nothing changed: no new update_time, no webhook (v2 sends one change per edit)
        row["update_time"] = rfc3339(now)
        changed["update_time"] = current["update_time"]
        table.put(row, table.times[row["id"]][0], now)
        self._emit(ChangeEvent("change", table.entity, row["id"], row, changed, current, user_id, source,
                               self.clock.now(), merged_from_id=merged_from_id))
        return row

    def delete(self, entity: str, row_id: int, user_id: int = 1, source: str = "api",
               merged_to_id: int | None = None) -> int:
        with self.lock:
            table = self.tables[entity]
            current = self.get(entity, row_id)
            if current["is_deleted"]:
                raise NotFound(f"{entity.capitalize()} not found")
            now = int(self.clock.now())
            # for deleted items update_time is the delete time (docs/pipedrive.md §5.4)
            row = {**current, "is_deleted": True, "update_time": rfc3339(now)}
            table.put(row, table.times[row_id][0], now)
            self._emit(ChangeEvent("delete", entity, row_id, None, current, current, user_id, source,
                                   self.clock.now(), merged_to_id=merged_to_id))
            return row_id

    def merge(self, entity: str, row_id: int, merge_with_id: int, user_id: int = 1, source: str = "app") -> dict:
        """Merge ``row_id`` into ``merge_with_id`` as the UI does: the survivor keeps its values, gains
        the other's emails/phones and custom values it lacks; related records move to the survivor;
        the merged-away record is deleted (webhook ``delete`` with merged_to_id, ``change`` with
        merged_from_id)."""
        if entity not in ("person", "organization"):
            raise BadRequest("Only persons and organizations can be merged")
        if row_id == merge_with_id:
            raise BadRequest("Cannot merge a record with itself")
        with self.lock:
            loser, survivor = self.get(entity, row_id), self.get(entity, merge_with_id)
            if loser["is_deleted"] or survivor["is_deleted"]:
                raise NotFound(f"{entity.capitalize()} not found")
            now = int(self.clock.now())
            row = dict(survivor)
            if entity == "person":
                for key in ("emails", "phones"):
                    have = {i["value"] for i in survivor[key]}
                    row[key] = list(survivor[key]) + [{**i, "primary": False} for i in loser[key]
                                                      if i["value"] not in have]
                if row["org_id"] is None:
                    row["org_id"] = loser["org_id"]
            custom = dict(survivor["custom_fields"])
            for key, value in loser["custom_fields"].items():
                if custom.get(key) is None and value is not None:
                    custom[key] = value
            row["custom_fields"] = custom
            self._store_change(self.tables[entity], survivor, row, now, user_id, source,
                               merged_from_id=row_id, force=True)
            ref = "person_id" if entity == "person" else "org_id"
            for rel in ("deal", "activity") + (("person",) if entity == "organization" else ()):
                table = self.tables[rel]
                for rel_row in list(table.rows.values()):
                    if rel_row.get(ref) == row_id and not rel_row["is_deleted"]:
                        moved = {**rel_row, ref: merge_with_id}
                        if rel == "activity" and ref == "person_id":
                            moved["participants"] = [{**p, "person_id": merge_with_id}
                                                     if p["person_id"] == row_id else p
                                                     for p in rel_row["participants"]]
                        self._store_change(table, rel_row, moved, now, user_id, source)
            self.delete(entity, row_id, user_id, source, merged_to_id=merge_with_id)
            return self.tables[entity].rows[merge_with_id]

    def set_update_time(self, entity: str, row_id: int, update_ts: int) -> dict:
        """Rewrite a stored record's ``update_time`` (and ``add_time`` when that would come later), with
        no event: test history, e.g. a record last touched hours ago. Returns the new row."""
        with self.lock:
            table = self.tables[entity]
            current = self.get(entity, row_id)
            add_ts = min(table.times[row_id][0], update_ts)
            row = {**current, "add_time": rfc3339(add_ts), "update_time": rfc3339(update_ts)}
            table.put(row, add_ts, update_ts)
            return row

    def insert_generated(self, entity: str, row: dict, add_ts: int, update_ts: int) -> None:
        """Store a generator-made row as-is (no events): the account's history before we look."""
        with self.lock:
            row["add_time"], row["update_time"] = rfc3339(add_ts), rfc3339(update_ts)
            self.tables[entity].put(row, add_ts, update_ts)

    # ----- webhooks --------------------------------------------------------------------------
    def add_webhook(self, body: dict, user_id: int = 1) -> dict:
        with self.lock:
            owned = [w for w in self.webhooks.values() if w["user_id"] == user_id]
            if len(owned) >= MAX_WEBHOOKS_PER_USER:
                raise Unprocessable("You have reached the limit of 40 webhooks per user")
            wid = self.next_webhook_id
            self.next_webhook_id += 1
            hook = {"id": wid, "company_id": self.company["id"], "owner_id": user_id,
                    "user_id": body.get("user_id") or user_id, "event_action": body["event_action"],
                    "event_object": body["event_object"], "subscription_url": body["subscription_url"],
                    "version": body.get("version") or "2.0", "is_active": 1,
                    "add_time": rfc3339(self.clock.now()), "remove_time": None, "type": "general",
                    "http_auth_user": body.get("http_auth_user"),
                    "http_auth_password": body.get("http_auth_password"), "remove_reason": None,
                    "last_delivery_time": None, "last_http_status": None, "admin_id": user_id,
                    "name": body.get("name") or ""}
            self.webhooks[wid] = hook
            return hook

    def remove_webhook(self, webhook_id: int) -> dict:
        with self.lock:
            hook = self.webhooks.pop(webhook_id, None)
            if hook is None:
                raise NotFound("Webhook not found")
            return hook
