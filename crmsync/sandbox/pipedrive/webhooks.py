"""Pipedrive webhook delivery: every change becomes one POST per matching registered webhook, with
the v2 (default) or v1 payload, HTTP Basic auth from the webhook's ``http_auth_user``/``password`` and
Pipedrive's retry count (3 retries, 4 attempts). Delivery runs on the shared
``sandbox.webhooks.WebhookDispatcher`` (one per registered webhook, batch size 1) in background threads.

The real retry clock is +3 s, +30 s, +150 s; the sandbox shortens it by ``time_scale`` (default 0.01)
and, because the shared dispatcher backs off exponentially, the spacing is doubling rather than
Pipedrive's exact 10x/5x steps. The ban works as documented: every failed *first* attempt counts;
at 10 the webhook is banned for 30 minutes (times ``time_scale``), events during the ban are lost,
and the counter starts again after it.
"""
from __future__ import annotations

import base64
import json
import time
import uuid

from ..webhooks import DispatcherPool, WebhookDispatcher, WebhookSettings
from .state import ChangeEvent, PipedriveState
from .timefmt import iso_millis
from .v1shapes import to_v1

BAN_AFTER_FAILURES = 10
BAN_SECONDS = 30 * 60
V1_ACTION = {"create": "added", "change": "updated", "delete": "deleted"}
V2_ACTION_OF_V1 = {"added": "create", "updated": "change", "deleted": "delete", "merged": "change"}


class WebhookSender:
    def __init__(self, state: PipedriveState, time_scale: float = 0.01, timeout: float = 10.0,
                 duplicate_rate: float = 0.0, out_of_order: bool = False):
        self.state = state
        self.senders = DispatcherPool()   # one per registered webhook, by its id
        self.time_scale = time_scale
        self.timeout = timeout
        self.duplicate_rate = duplicate_rate
        self.out_of_order = out_of_order
        self.enabled = True
        self._bans: dict[int, dict] = {}  # webhook id -> {"fails", "seen_until", "banned_until"}
        self.lost_to_ban = 0
        state.subscribe(self._on_change)

    # ----- configuration ---------------------------------------------------------------------
    def settings(self) -> dict:
        return {"time_scale": self.time_scale, "timeout": self.timeout, "duplicate_rate": self.duplicate_rate,
                "out_of_order": self.out_of_order, "enabled": self.enabled,
                "retry_delays_seconds": [3 * self.time_scale * 2 ** n for n in range(3)]}

    def configure(self, **changes) -> dict:
        known = {"time_scale", "timeout", "duplicate_rate", "out_of_order", "enabled"}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown webhook settings: {sorted(unknown)}")
        for key, value in changes.items():
            setattr(self, key, value)
        self.senders.configure(**self._dispatcher_settings())
        return self.settings()

    def _dispatcher_settings(self) -> dict:
        return {"max_retries": 3, "retry_delay": 3 * self.time_scale, "max_retry_delay": 150 * self.time_scale,
                "timeout": self.timeout, "duplicate_rate": self.duplicate_rate, "out_of_order": self.out_of_order,
                "batch_size": 1, "batch_window": 0.0, "concurrency": 1}

    def _dispatcher(self, hook: dict) -> WebhookDispatcher:
        url = hook["subscription_url"]
        return self.senders.get(hook["id"], lambda: WebhookDispatcher(
            self._preparer(hook["id"]), WebhookSettings(url=url, **self._dispatcher_settings())),
            stale=lambda d: d.settings.url != url)

    def forget(self, webhook_id: int) -> None:
        """The webhook was deleted: stop its sender (queued events are dropped, as on Pipedrive)."""
        self.senders.discard(webhook_id)

    def reset(self) -> None:
        self._bans.clear()
        self.lost_to_ban = 0
        self.senders.reset()

    stop = reset

    # ----- delivery --------------------------------------------------------------------------
    def _preparer(self, webhook_id: int):
        def prepare(url: str, events: list, attempt: int) -> tuple[bytes, dict]:
            payload = dict(events[0])
            if "meta" in payload and payload.get("v") != 1:
                payload["meta"] = {**payload["meta"], "attempt": attempt + 1}
            else:
                payload["retry"] = attempt
            headers = {}
            hook = self.state.webhooks.get(webhook_id)
            if hook and hook.get("http_auth_user") is not None:
                token = f"{hook['http_auth_user']}:{hook.get('http_auth_password') or ''}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
            return json.dumps(payload, separators=(",", ":")).encode(), headers
        return prepare

    def _on_change(self, event: ChangeEvent) -> None:
        if not self.enabled:
            return
        for hook in list(self.state.webhooks.values()):
            if not hook["is_active"] or hook["event_object"] not in (event.entity, "*"):
                continue
            action = hook["event_action"]
            wanted = V2_ACTION_OF_V1.get(action, action)
            if wanted not in (event.action, "*"):
                continue
            dispatcher = self._dispatcher(hook)
            if self._banned(hook["id"], dispatcher):
                self.lost_to_ban += 1
                continue
            payload = self._v1_payload(hook, event) if hook["version"] == "1.0" else self._v2_payload(hook, event)
            dispatcher.enqueue([payload])

    def _banned(self, webhook_id: int, dispatcher: WebhookDispatcher) -> bool:
        """Count first-attempt failures delivered since the last look; ban at 10."""
        ban = self._bans.setdefault(webhook_id, {"fails": 0, "seen_until": 0.0, "banned_until": 0.0})
        now = time.time()
        if now < ban["banned_until"]:
            return True
        for entry in dispatcher.deliveries():
            if entry["t"] <= ban["seen_until"]:
                continue
            ban["seen_until"] = entry["t"]
            if entry["attempt"] == 0 and not entry["ok"] and not entry["duplicate"]:
                ban["fails"] += 1
        if ban["fails"] >= BAN_AFTER_FAILURES:
            ban["fails"] = 0
            ban["banned_until"] = now + BAN_SECONDS * self.time_scale
            return True
        return False

    def banned_until(self, webhook_id: int) -> float:
        return self._bans.get(webhook_id, {}).get("banned_until", 0.0)

    def _common(self, hook: dict, event: ChangeEvent) -> tuple[str, list[int]]:
        host = f"{self.state.company['domain']}.pipedrive.com"
        return host, sorted(self.state.users_by_id)

    def _v2_payload(self, hook: dict, event: ChangeEvent) -> dict:
        host, permitted = self._common(hook, event)
        meta = {"action": event.action, "entity": event.entity, "entity_id": str(event.entity_id),
                "id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4()),
                "company_id": str(self.state.company["id"]), "user_id": str(event.user_id),
                "is_bulk_edit": False, "timestamp": iso_millis(event.timestamp), "type": hook["type"],
                "version": "2.0", "webhook_id": str(hook["id"]), "webhook_owner_id": str(hook["owner_id"]),
                "change_source": event.change_source, "attempt": 1, "host": host,
                "permitted_user_ids": [str(u) for u in permitted]}
        if event.merged_to_id is not None:
            meta["merged_to_id"] = str(event.merged_to_id)
        if event.merged_from_id is not None:
            meta["merged_from_id"] = str(event.merged_from_id)
        return {"meta": meta, "data": event.data, "previous": event.previous}

    def _v1_payload(self, hook: dict, event: ChangeEvent) -> dict:
        host, permitted = self._common(hook, event)
        action = "merged" if event.merged_from_id is not None else V1_ACTION[event.action]
        ts_micro = int(event.timestamp * 1_000_000)
        empty = {"current": [], "previous": []}
        meta = {"v": 1, "action": action, "object": event.entity, "change_source": event.change_source,
                "id": event.entity_id, "company_id": self.state.company["id"], "user_id": event.user_id,
                "host": host, "timestamp": ts_micro // 1_000_000, "timestamp_micro": ts_micro,
                "permitted_user_ids": permitted, "trans_pending": False, "is_bulk_update": False,
                "pipedrive_service_name": False, "matches_filters": empty, "webhook_id": str(hook["id"])}
        return {"v": 1, "matches_filters": empty, "meta": meta, "retry": 0,
                "current": to_v1(self.state, event.entity, event.data),
                "previous": to_v1(self.state, event.entity, event.previous_full),
                "event": f"{action}.{event.entity}"}

    # ----- observation -----------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        return self.senders.flush(timeout)

    def deliveries(self) -> list[dict]:
        return self.senders.deliveries("webhook_id")

    def last_delivery(self, webhook_id: int) -> dict | None:
        d = self.senders.find(webhook_id)
        entries = d.deliveries(1) if d else []
        return entries[-1] if entries else None

    def counters(self) -> dict:
        return {"lost_to_ban": self.lost_to_ban, **self.senders.counters()}
