"""One entity's records with sorted indexes for cursor paging.

Rows are v2-shaped dicts and are never mutated once stored (a write stores a new dict), so a reader may
serialise a row it fetched under the state lock after releasing it. Indexes are lists of ``(key, id)``
kept sorted on every write; paging is a bisect to the cursor plus a forward scan.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterator

SORT_KEYS = ("id", "update_time", "add_time", "due_date")


class EntityTable:
    def __init__(self, entity: str):
        self.entity = entity
        self.rows: dict[int, dict] = {}
        self.times: dict[int, tuple[int, int]] = {}  # id -> (add_ts, update_ts); update_ts of a delete = delete time
        self.deleted: set[int] = set()
        self.next_id = 1
        self._indexes: dict[str, list[tuple]] = {}

    def _key(self, sort_by: str, row_id: int) -> tuple:
        if sort_by == "id":
            return (row_id, row_id)
        if sort_by == "update_time":
            return (self.times[row_id][1], row_id)
        if sort_by == "add_time":
            return (self.times[row_id][0], row_id)
        return (self.rows[row_id].get(sort_by) or "", row_id)

    def index(self, sort_by: str) -> list[tuple]:
        idx = self._indexes.get(sort_by)
        if idx is None:
            idx = sorted(self._key(sort_by, i) for i in self.rows)
            self._indexes[sort_by] = idx
        return idx

    def put(self, row: dict, add_ts: int, update_ts: int) -> None:
        row_id = row["id"]
        old = {s: self._key(s, row_id) for s in self._indexes} if row_id in self.rows else {}
        self.rows[row_id] = row
        self.times[row_id] = (add_ts, update_ts)
        self.next_id = max(self.next_id, row_id + 1)
        if row.get("is_deleted"):
            self.deleted.add(row_id)
        else:
            self.deleted.discard(row_id)
        for sort_by, idx in self._indexes.items():
            new = self._key(sort_by, row_id)
            if old.get(sort_by) == new:
                continue
            if sort_by in old:
                pos = bisect_left(idx, old[sort_by])
                del idx[pos]
            insort(idx, new)

    def remove(self, row_id: int) -> None:
        """Permanent removal (the 30-day purge of soft-deleted rows)."""
        if row_id not in self.rows:
            return
        for sort_by, idx in self._indexes.items():
            pos = bisect_left(idx, self._key(sort_by, row_id))
            del idx[pos]
        del self.rows[row_id]
        del self.times[row_id]
        self.deleted.discard(row_id)

    def scan(self, sort_by: str, descending: bool, after: tuple | None,
             lower: tuple | None = None, upper: tuple | None = None) -> Iterator[int]:
        """Ids in sort order strictly after the cursor position ``after``, limited to keys in
        ``[lower, upper)`` when given (used to jump straight to an ``updated_since`` range)."""
        idx = self.index(sort_by)
        if not descending:
            start = bisect_right(idx, after) if after is not None else 0
            if lower is not None:
                start = max(start, bisect_left(idx, lower))
            stop = bisect_left(idx, upper) if upper is not None else len(idx)
            for i in range(start, stop):
                yield idx[i][1]
        else:
            stop = bisect_left(idx, after) if after is not None else len(idx)
            if upper is not None:
                stop = min(stop, bisect_left(idx, upper))
            start = bisect_left(idx, lower) if lower is not None else 0
            for i in range(stop - 1, start - 1, -1):
                yield idx[i][1]

    def page(self, sort_by: str, descending: bool, after: tuple | None, limit: int,
             keep: Callable[[dict], bool], lower: tuple | None = None,
             upper: tuple | None = None) -> tuple[list[dict], tuple | None]:
        """Up to ``limit`` rows passing ``keep`` and the cursor key of the last one if more follow."""
        out: list[dict] = []
        last_key = None
        for row_id in self.scan(sort_by, descending, after, lower, upper):
            row = self.rows[row_id]
            if not keep(row):
                continue
            if len(out) == limit:
                return out, last_key
            out.append(row)
            last_key = self._key(sort_by, row_id)
        return out, None
