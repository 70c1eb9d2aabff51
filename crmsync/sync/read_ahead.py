"""An inline run's next pull unit, fetched from the CRM while this unit is written.

Only for a runner whose next unit follows in this process (`crmsync.sync.inline`): the unit's
request wait and PostgreSQL's writes then overlap instead of taking turns. A Celery unit does not
read ahead: its continuation may run in any worker, and pages fetched here would be requests
spent for nothing.

Where the platform can fork, the pages are fetched by a forked child process, which sends back
the unit's records (pickled, through a pipe). On a thread, every page's answer would wait for the
interpreter lock while this process formats rows: measured on 2 cores, the chain of 200 list
pages took 0.9 s alone and 1.7-2.7 s beside a busy writer, and the chain is what a backfill
waits for. The child:
- opens CRM connections of its own: the parent's keep-alive socket stays the parent's;
- never touches the database: `crmsync.db` refuses it there (an OAuth refresh, which writes the
  vault, fails the read-ahead and the unit fetches for itself, in the parent);
- runs only when its calls are counted where the parent sees them: a shared (Redis) rate budget,
  or no limit on the account. A process-local budget reads ahead on a thread instead.

What was read ahead is used only by the same step at the same cursor; anything else (another
cursor, a failure in the child or thread) is dropped, and the unit fetches for itself as it
would have.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import struct
import threading
from typing import Any

from crmsync.platforms.base import RemoteRecord

log = logging.getLogger(__name__)

Fetched = tuple[list[RemoteRecord], dict | None]


def fetch_unit(adapter, entity: str, cursor: dict, want: int) -> Fetched:
    """Up to `want` records from `cursor` on, however many CRM pages that takes (HubSpot lists 100
    at a time): fewer, larger transactions write much faster. Returns them and the next cursor."""
    records: list[RemoteRecord] = []
    next_cursor: dict | None = cursor
    while next_cursor is not None and len(records) < want:
        page = adapter.list_changed(entity, next_cursor, want - len(records))
        records += page.records
        next_cursor = page.cursor
    return records, next_cursor


class ReadAhead:
    """`start` reading ahead from a step's cursor; `take` each unit as it runs (or `discard`)."""

    def __init__(self) -> None:
        self._stream: _Stream | None = None

    def start(self, step_id: str, adapter, entity: str, cursor: dict, want: int) -> None:
        """Read ahead from `cursor`, unless what is being read ahead already continues there."""
        stream = self._stream
        if stream is not None and stream.step_id == step_id and stream.expects == cursor:
            return
        self.discard()
        kind = _ChildStream if _can_fork(adapter) else _ThreadStream
        self._stream = kind(step_id, adapter, entity, cursor, want)

    def take(self, step_id: str, cursor: dict) -> Fetched | None:
        """What was read ahead for this step at this cursor, or None. Waits for it: on a thread,
        the adapter is the caller's again afterwards."""
        stream = self._stream
        if stream is None:
            return None
        if stream.step_id != step_id or stream.expects != cursor:
            self.discard()
            return None
        unit = stream.next()
        if unit is None or unit[1] is None:
            self.discard()      # failed, or the step's last unit: nothing more comes
        return unit

    def discard(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()


def _can_fork(adapter) -> bool:
    return hasattr(os, "fork") and adapter.rate_budget_shared()


class _Stream:
    """The units of one step read ahead, in order from `expects` (the cursor of the next one)."""
    step_id: str
    expects: dict | None

    def next(self) -> Fetched | None:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError


class _ThreadStream(_Stream):
    """One unit, on a thread of this process."""

    def __init__(self, step_id: str, adapter, entity: str, cursor: dict, want: int):
        self.step_id, self.expects = step_id, cursor
        self._box: list[Fetched] = []

        def fetch() -> None:
            try:
                self._box.append(fetch_unit(adapter, entity, cursor, want))
            except Exception as err:  # noqa: BLE001  the unit that needs it fetches again
                log.debug("read-ahead of %s at %s dropped: %s", entity, cursor, err)

        self._thread = threading.Thread(target=fetch, name=f"crmsync-read-ahead-{entity}", daemon=True)
        self._thread.start()

    def next(self) -> Fetched | None:
        self._thread.join()
        self.expects = None
        return self._box[0] if self._box else None

    def cancel(self) -> None:
        self._thread.join()     # a thread cannot be stopped; the adapter is shared until it ends


# A message from the child: its length (8 bytes, big-endian), then that many bytes of pickle.
_LENGTH = struct.Struct(">Q")


class _ChildStream(_Stream):
    """Every unit from `cursor` to the step's end, fetched by one forked child and sent through a
    pipe as it is read. The pipe holds the child back (it waits to send a unit until this process
    takes the one before); forked once per step, so the copy-on-write of this process's memory
    is paid once, not per unit."""

    def __init__(self, step_id: str, adapter, entity: str, cursor: dict, want: int):
        self.step_id, self.expects = step_id, cursor
        self._adapter = adapter
        read_end, write_end = os.pipe()
        self._pid: int | None = os.fork()
        if self._pid == 0:      # the child: fetch, send, and leave without running the parent's code
            os.close(read_end)
            _child(adapter, entity, cursor, want, write_end)
        os.close(write_end)
        self._pipe = os.fdopen(read_end, "rb")

    def next(self) -> Fetched | None:
        header = self._pipe.read(_LENGTH.size)
        data = self._pipe.read(_LENGTH.unpack(header)[0]) if len(header) == _LENGTH.size else b""
        if not data:
            return None      # the child died before it could answer
        # Our own child's bytes, over a pipe only the two processes hold.
        message: dict[str, Any] = pickle.loads(data)  # noqa: S301
        # The child's calls were this run's: counted as this adapter's (the job's request count).
        self._adapter.count_requests(message["requests"])
        if "failed" in message:
            log.debug("read-ahead in child %d dropped: %s", self._pid, message["failed"])
            return None
        self.expects = message["cursor"]
        return message["records"], message["cursor"]

    def cancel(self) -> None:
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)     # done already, or blocked sending a unit nobody takes
        self._pipe.close()
        os.waitpid(pid, 0)


def _child(adapter, entity: str, cursor: dict, want: int, write_end: int) -> None:
    """Runs in the forked child; never returns."""
    code = 0
    try:
        from crmsync.db import forbid_database
        forbid_database("a read-ahead child process does not use the database")
        adapter.close()      # the inherited sockets stay the parent's: closing ours leaves theirs open
        with os.fdopen(write_end, "wb") as pipe:
            next_cursor: dict | None = cursor
            while next_cursor is not None:
                before = adapter.requests_sent()
                try:
                    records, next_cursor = fetch_unit(adapter, entity, next_cursor, want)
                    message: dict[str, Any] = {"records": records, "cursor": next_cursor}
                except Exception as err:  # noqa: BLE001  reported; the parent fetches for itself
                    message, next_cursor = {"failed": f"{type(err).__name__}: {err}"}, None
                message["requests"] = adapter.requests_sent() - before
                data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
                pipe.write(_LENGTH.pack(len(data)))
                pipe.write(data)
                pipe.flush()
    except BaseException:  # noqa: BLE001  nothing of the parent's may run here; the parent sees no answer
        code = 1
    finally:
        os._exit(code)
