"""Reading a pull's CRM pages ahead of its writes, for a run that goes on in this process
(`crmsync sync run --inline`): the requests' wait and PostgreSQL's writes overlap instead of
taking turns.

A reader thread fetches an entity's units one after another, from a cursor on, and holds up to
`DEPTH` of them until the unit that writes them takes them. A unit takes only what was read for
its own entity at its own cursor; anything else (another cursor, an error on the thread) is
dropped and the unit fetches for itself, as it would have. A Celery unit never reads ahead: its
continuation may run in any worker, and pages fetched here would be requests spent for nothing.

A reader has an adapter of its own (`crmsync.sync.connect.reader_adapter`): its own keep-alive
connection, and its own request count, which `requests_spent` hands to the units, so a job counts
every request, those sent between two units included.

`read_early` starts the reader before the job exists: `sync run --inline` loads SQLAlchemy and
the ORM models (about half a second of one core) with the CRM already answering on the other.
So this module, and what it calls on the way to the first request, import neither (an OAuth
refresh on the way saves the new tokens through the ORM, and imports it then). The listing's
high-water mark is then when the reader began (`began`), not when its first unit is written.
Where it may (`may_fork`), that reader is a child process (`_ChildReader`) that connects to the
CRM itself: the listing's requests, JSON and mapping then run on the other core instead of taking
turns with the imports and the writes in this one, and this process loads no CRM client.
"""
from __future__ import annotations

import gc
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from crmsync.entities import ENTITY_PLURALS
from crmsync.platforms.base import RemoteRecord, moved_on
from crmsync.runtime import CollectBetweenUnits

log = logging.getLogger(__name__)

# Steps run in this order, pulls before pushes, so associations find the records they point to.
ENTITY_ORDER = ("company", "contact", "deal", "activity", "task")

# An inline run makes room for no other tenant, so its units after the first hold this many
# CRMSYNC_PAGE_SIZE pages: fewer commits, checkpoints and lookups per record.
INLINE_UNIT_PAGES = 5

DEPTH = 2   # units held ahead of the writes: a unit of CRMSYNC_PAGE_SIZE and one of 5x that


def fetch_unit(adapter, entity: str, cursor: dict, want: int,
               stopped: Callable[[], bool] = lambda: False) -> tuple[list[RemoteRecord], dict | None]:
    """Up to `want` records from `cursor` on, however many CRM pages that takes (HubSpot lists 100
    at a time): fewer, larger transactions write much faster. Returns them and the next cursor."""
    records: list[RemoteRecord] = []
    next_cursor: dict | None = cursor
    read: set[str] = set()
    while next_cursor is not None and len(records) < want and not stopped():
        page = adapter.list_changed(entity, next_cursor, want - len(records))
        records += page.records
        # A CRM answering a cursor of this unit again (the one it was asked with, or an earlier
        # one: A -> B -> A) would keep this job reading the same pages.
        next_cursor = moved_on(next_cursor, page.cursor, platform=adapter.platform, entity=entity, seen=read)
    return records, next_cursor


@dataclass(frozen=True)
class Unit:
    records: list[RemoteRecord]
    next_cursor: dict | None


class _Reader:
    """One entity's units from a cursor on, on a thread, at most DEPTH ahead of the taker, with
    an adapter of its own (its requests are counted apart from the unit's; closed with it)."""

    def __init__(self, adapter, entity: str, cursor: dict, want: int, *, began: datetime | None = None):
        self.adapter, self.entity, self.expected = adapter, entity, cursor
        self.first_cursor = cursor
        self.began = began or datetime.now(UTC)   # before its first request
        self.counted = 0             # requests of its adapter already handed to a unit
        self._units: deque[Unit] = deque()
        self._cond = threading.Condition()
        self._stopped = self._done = False
        self._thread = threading.Thread(target=self._run, args=(cursor, want),
                                        name=f"crmsync-read-ahead-{entity}", daemon=True)
        self._thread.start()

    def _fetch(self, cursor: dict, want: int) -> tuple[list[RemoteRecord], dict | None]:
        return fetch_unit(self.adapter, self.entity, cursor, want, lambda: self._stopped)

    def requests_sent(self) -> int:
        return self.adapter.requests_sent()

    def _run(self, cursor: dict | None, want: int) -> None:
        try:
            while cursor is not None:
                with self._cond:
                    while len(self._units) >= DEPTH and not self._stopped:
                        self._cond.wait()
                    if self._stopped:
                        return
                records, nxt = self._fetch(cursor, want)
                with self._cond:
                    if self._stopped:
                        return
                    self._units.append(Unit(records, nxt))
                    self._cond.notify_all()
                cursor = nxt
        except Exception as err:  # noqa: BLE001  the unit that needs it fetches for itself
            log.debug("read-ahead of %s dropped: %s", self.entity, err)
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def take(self, cursor: dict) -> Unit | None:
        if cursor != self.expected:
            return None
        with self._cond:
            while not self._units and not self._done:
                self._cond.wait()
            if not self._units:
                return None
            unit = self._units.popleft()
            self._cond.notify_all()
        self.expected = unit.next_cursor
        return unit

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join()
        self.adapter.close()


class _ChildReader(_Reader):
    """One entity's units read by a child process, forked before this process has loaded
    SQLAlchemy, requests or the CRM's client, or started a thread: the child connects to the CRM
    (`make_adapter`), works out where the listing starts (`start`: ("cursor", a checkpoint's
    cursor) or ("since", the high-water mark or None), as the job's first unit will), and reads.
    Its requests, JSON and mapping, and the loading of what they need, then take the other core
    (about a fifth of a backfill's CPU) instead of this process's turns. The child sends the
    cursor it starts at, then each unit, pickled through a pipe (its records as tuples; unpickling
    costs a fifth of reading it); a thread here takes them in, at most DEPTH ahead, and the child
    waits on the full pipe meanwhile. Requests are counted in memory both share, before each page
    and as the child ends. A child that may not read (`child_may_read`: its rate budget would be its own) sends
    no request and says so; the thread here then reads with an adapter of its own, as a _Reader."""

    def __init__(self, make_adapter: Callable[[], Any], entity: str, start: tuple[str, Any], want: int):
        import mmap
        import os
        began = datetime.now(UTC)
        self.start, self._make_adapter = start, make_adapter
        self._started = False        # whether the child's starting cursor (or its end) came in
        # multiprocessing (a fork-context Process, Pipe and Value) would do the same, but its
        # import adds 15 ms to the start-up this reader exists to shorten; a fork, a pipe and a
        # shared page are all it needs.
        self._shared = mmap.mmap(-1, 16)      # the child's requests so far; whether to stop
        readable, writable = os.pipe()
        try:
            self._pid = os.fork()
        except OSError:                       # no process to be had: the units fetch for themselves
            os.close(readable)
            os.close(writable)
            self._shared.close()
            raise
        if self._pid == 0:
            os.close(readable)
            self._read_in_child(make_adapter, entity, start, want, writable)     # never returns
        os.close(writable)
        self._pipe = os.fdopen(readable, "rb")
        super().__init__(None, entity, None, want, began=began)

    def _read_in_child(self, make_adapter, entity: str, start: tuple[str, Any], want: int, writable: int) -> None:
        import os
        import pickle
        import signal
        signal.signal(signal.SIGINT, signal.SIG_DFL)    # Ctrl-C ends it with its parent, quietly
        adapter = None
        try:
            adapter = make_adapter()
            with os.fdopen(writable, "wb") as out:
                if not child_may_read(adapter):
                    pickle.dump(DECLINED, out)
                    return
                cursor = _starting_at(adapter, entity, start)
                pickle.dump(cursor, out, protocol=pickle.HIGHEST_PROTOCOL)
                out.flush()
                # Collection as in its parent: if the parent turned it off for the run, its
                # units collect now and then (crmsync.runtime.CollectBetweenUnits).
                collecting = None if gc.isenabled() else CollectBetweenUnits()
                while cursor is not None and not self._stop_asked():
                    records, cursor = fetch_unit(adapter, entity, cursor, want,
                                                 lambda: self._report(adapter) or self._stop_asked())
                    if self._stop_asked():
                        break
                    pickle.dump((list(map(_as_tuple, records)), cursor), out, protocol=pickle.HIGHEST_PROTOCOL)
                    out.flush()
                    if collecting is not None:
                        collecting.unit_done()
        except BaseException as err:  # noqa: BLE001  the unit that needs it fetches for itself
            log.debug("read-ahead of %s dropped in its child process: %s", entity, type(err).__name__)
        finally:
            if adapter is not None:
                self._report(adapter)
            os._exit(0)

    def _report(self, adapter) -> None:
        self._shared[0:8] = adapter.requests_sent().to_bytes(8, "little")

    def _stop_asked(self) -> bool:
        return self._shared[8] == 1

    def _run(self, cursor: dict | None, want: int) -> None:
        import pickle
        cursor = None
        try:
            cursor = pickle.load(self._pipe)      # noqa: S301  our own child, through our own pipe
            if cursor == DECLINED:
                # The child's budget would be its own: this thread reads, as a _Reader does.
                self.adapter = self._make_adapter()
                cursor = _starting_at(self.adapter, self.entity, self.start)
        except Exception as err:  # noqa: BLE001  the units fetch for themselves
            log.debug("read-ahead of %s dropped before its first unit: %s", self.entity, type(err).__name__)
            cursor = None
        finally:     # whatever happened, a unit waiting in starting_cursor is answered
            with self._cond:
                self.expected = self.first_cursor = cursor
                self._started = True
                if cursor is None:
                    self._done = True
                self._cond.notify_all()
        if cursor is not None:
            super()._run(cursor, want)

    def starting_cursor(self) -> dict | None:
        """The cursor the child starts at (None: it reads nothing), once it has said so."""
        with self._cond:
            while not self._started:
                self._cond.wait()
            return self.first_cursor

    def _fetch(self, cursor: dict, want: int) -> tuple[list[RemoteRecord], dict | None]:
        import pickle
        if self.adapter is not None:
            return super()._fetch(cursor, want)
        try:
            records, cursor = pickle.load(self._pipe)    # noqa: S301  our own child, through our own pipe
        except EOFError:
            raise EOFError("the child reading ahead ended") from None
        return [RemoteRecord(*values) for values in records], cursor

    def requests_sent(self) -> int:
        mine = self.adapter.requests_sent() if self.adapter is not None else 0
        return int.from_bytes(self._shared[0:8], "little") + mine

    def stop(self) -> None:
        import os
        self._shared[8] = 1
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join()
        self._pipe.close()          # a child waiting on the full pipe ends at once
        os.waitpid(self._pid, 0)    # a page in flight ends first, and is counted
        if self.adapter is not None:
            self.adapter.close()


# A unit's records cross the pipe as tuples of their fields, in RemoteRecord's order: a dataclass
# instance costs pickle a quarter more on each side (5,000 records: 33 against 26 ms to pickle).
_as_tuple = attrgetter(*(f.name for f in fields(RemoteRecord)))

DECLINED = "declined"    # what a child that may not read sends instead of its starting cursor


def _starting_at(adapter, entity: str, start: tuple[str, Any]) -> dict:
    kind, value = start
    return value if kind == "cursor" else adapter.start_cursor(entity, value)


def may_fork() -> bool:
    """Whether a child process may read for this one now: on Linux, where a fork is how processes
    start, and before any other thread runs (a lock one held at the fork would stay held in the
    child)."""
    return sys.platform == "linux" and threading.active_count() == 1


def child_may_read(adapter) -> bool:
    """Whether a child process may read with this adapter: one whose client reconnects, and
    whose rate budget, if it has one, other processes see too (Redis), since what a child spends
    from its own memory would go unseen by its parent."""
    client = getattr(adapter, "client", None)
    return client is not None and hasattr(client, "reconnect") and not client.budget_is_this_process()


class ReadAhead:
    """The units of a pull after the one being written, read on a thread (see the module)."""

    def __init__(self) -> None:
        self._reader: _Reader | None = None
        self._uncounted = 0          # requests of a let-go reader's own adapter

    def follow(self, make_adapter: Callable[[], Any], entity: str, cursor: dict, want: int) -> None:
        """Read `entity`'s units of `want` records from `cursor` on, on a thread, unless that is
        what the reader does already; a new reader gets `make_adapter()`."""
        reader = self._reader
        if reader is not None and reader.entity == entity and reader.expected == cursor:
            return
        self.discard()
        self._reader = _Reader(make_adapter(), entity, cursor, want)

    def follow_in_child(self, make_adapter: Callable[[], Any], entity: str, start: tuple[str, Any],
                        want: int) -> None:
        """Read `entity`'s units of `want` records in a child process (`_ChildReader`, which
        calls `make_adapter`; the caller checks `may_fork`), from `start`: ("cursor", cursor) or
        ("since", the listing's high-water mark or None)."""
        self.discard()
        self._reader = _ChildReader(make_adapter, entity, start, want)

    def start_cursor(self, entity: str, since: datetime | None) -> dict | None:
        """Where a child reading `entity` since `since` starts its listing, as the adapter it
        made says (waits for it to say so); None for any other reader, or a child that reads
        nothing. The job's unit then needs no adapter of its own to know where to start."""
        reader = self._reader
        if isinstance(reader, _ChildReader) and reader.entity == entity and reader.start == ("since", since):
            return reader.starting_cursor()
        return None

    def began(self, entity: str, cursor: dict) -> datetime | None:
        """When the reader of a listing that starts at `cursor` sent its first request, if it has
        handed nothing over yet: the listing's high-water mark is then that moment, not the later
        one at which its first unit is written (a record changed in between is in no page)."""
        reader = self._reader
        if reader is not None and reader.entity == entity and reader.expected == reader.first_cursor == cursor:
            return reader.began
        return None

    def take(self, entity: str, cursor: dict) -> tuple[list[RemoteRecord], dict | None] | None:
        """The records read for `entity` at `cursor` and the cursor after them, or None (the
        reader is then let go). Waits while the unit is being read."""
        reader = self._reader
        unit = reader.take(cursor) if reader is not None and reader.entity == entity else None
        if unit is None:
            self.discard()
            return None
        return unit.records, unit.next_cursor

    def requests_spent(self) -> int:
        """Requests the readers sent since last asked, read ahead or thrown away (the unit's own
        adapter counts the rest): the job's count is every request it cost."""
        spent, self._uncounted = self._uncounted, 0
        reader = self._reader
        if reader is not None:
            total = reader.requests_sent()
            spent, reader.counted = spent + total - reader.counted, total
        return spent

    def discard(self) -> None:
        """Stop reading (waits for a page in flight): the unit's adapter is its caller's alone."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop()
            self._uncounted += reader.requests_sent() - reader.counted


# --- the head start of `sync run --inline` ---------------------------------------------------
@dataclass(frozen=True)
class ConfigView:
    """The config columns an adapter is made from, read without the ORM (`crmsync.sync.connect`
    takes this or a SyncConfig)."""
    id: str
    tenant_id: str
    platform: str
    api_base_url: str | None
    account_id: str | None
    field_mappings: dict[str, Any]
    credentials_vault_id: str


def read_early(config_id: str, *, full: bool, force: bool, url: str | None = None) -> ReadAhead | None:
    """The reader of the first pull unit of the job `sync run CONFIG --inline` is about to create,
    started now. None where that unit cannot be foreseen from the database as it stands: a bad or
    unknown config id, a disabled config without `force`, a job of the config already active
    (it is resumed or refused), a first step that is not a pull. Any failure here is left for
    the run itself to meet and report; nothing is written."""
    from crmsync.db import reads
    from crmsync.settings import get_settings
    try:
        plan = reads.first_pull_plan(config_id, ENTITY_ORDER, url)
    except (reads.ReadError, ValueError) as err:
        log.debug("no early read for config %s: %s", config_id, err)
        return None
    if plan is None or plan["active_job"] or not (plan["enabled"] or force):
        return None
    if plan["sync_direction"] not in ("pull", "bidirectional") or plan["entity"] is None:
        return None
    if plan["sealed"] is None:       # no vault entry of the config's own tenant: nothing to read with
        return None
    config = ConfigView(**{f: plan[f] for f in ConfigView.__dataclass_fields__})
    sealed, entity, checkpoint = plan["sealed"], plan["entity"], plan["checkpoint"]
    if checkpoint is not None and checkpoint["cursor"] is not None and not full:
        start = ("cursor", checkpoint["cursor"]["adapter"])     # a listing cut short: the job goes on from it
    else:
        start = ("since", None if full or checkpoint is None else checkpoint["synced_until"])

    def make_adapter():
        from crmsync.sync.connect import adapter_for
        return adapter_for(config, sealed)

    # The first unit is as large as the later ones: it is read while the job is made, so the
    # writes need not start on a short one.
    want = get_settings().page_size * INLINE_UNIT_PAGES
    ahead = ReadAhead()
    adapter = None
    try:
        if may_fork():
            # The child connects to the CRM itself: this process never loads the CRM's client
            # unless a unit has to fetch for itself.
            ahead.follow_in_child(make_adapter, entity, start, want)
        else:
            adapter = make_adapter()
            ahead.follow(lambda: adapter, entity, _starting_at(adapter, entity, start), want)
        log.debug("reading %s of config %s ahead of the job", ENTITY_PLURALS[entity], config_id)
        return ahead
    except Exception as err:  # noqa: BLE001  the run meets the same failure and reports it
        log.debug("no early read for config %s: %s", config_id, type(err).__name__)
        if adapter is not None:
            adapter.close()
        return None
