"""crmsync.runtime: how a process that only runs an inline sync collects its garbage."""
from __future__ import annotations

import gc

from crmsync.runtime import CollectBetweenUnits


def _collections() -> list[int]:
    seen: list[int] = []
    gc.callbacks.append(lambda phase, info: phase == "start" and seen.append(info["generation"]))
    return seen


def test_collection_is_off_during_the_run_and_full_every_so_many_units():
    assert gc.isenabled()
    seen = _collections()
    try:
        with CollectBetweenUnits(every=3) as collecting:
            assert not gc.isenabled()
            for _ in range(2):
                collecting.unit_done()
            assert seen == []
            collecting.unit_done()
            assert seen == [2]                 # the third unit: one full collection
            for _ in range(3):
                collecting.unit_done()
            assert seen == [2, 2]
        assert gc.isenabled()
    finally:
        gc.callbacks.pop()


def test_a_process_that_had_collection_off_keeps_it_off():
    gc.disable()
    try:
        with CollectBetweenUnits():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_cyclic_garbage_made_between_collections_is_freed_at_the_next():
    class Node:
        pass
    import weakref
    with CollectBetweenUnits(every=1) as collecting:
        node = Node()
        node.me = node
        alive = weakref.ref(node)
        del node
        assert alive() is not None            # automatic collection is off
        collecting.unit_done()
        assert alive() is None
