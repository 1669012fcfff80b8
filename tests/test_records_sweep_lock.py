"""The record store's sweep lock: sweeps of several homes sharing one PostgreSQL store wait for each other."""

from __future__ import annotations

import threading

import pytest
from conftest import record_store_location

from wf_pipeline.records import open_record_store


@pytest.mark.postgres
def test_a_second_holder_waits_until_the_first_releases(tmp_path) -> None:
    with record_store_location("postgres", tmp_path) as target:
        first = open_record_store(target.url, schema=target.schema)
        second = open_record_store(target.url, schema=target.schema)
        entered = threading.Event()

        def sweep() -> None:
            with second.sweep_lock():
                entered.set()

        try:
            with first.sweep_lock():
                waiter = threading.Thread(target=sweep)
                waiter.start()
                # The second store's session blocks on the advisory lock while the first holds it.
                assert not entered.wait(1.0)
                # The first store still works while it holds the lock (another pooled connection).
                assert first.active_holds() == []
            assert entered.wait(10.0)
            waiter.join(10.0)
            # Released: it can be taken again at once.
            with first.sweep_lock():
                pass
        finally:
            first.close()
            second.close()


@pytest.mark.postgres
def test_stores_with_other_schemas_do_not_share_the_lock(tmp_path) -> None:
    with (
        record_store_location("postgres", tmp_path / "a") as one,
        record_store_location("postgres", tmp_path / "b") as other,
    ):
        first = open_record_store(one.url, schema=one.schema)
        second = open_record_store(other.url, schema=other.schema)
        try:
            with first.sweep_lock():
                done = threading.Event()

                def sweep() -> None:
                    with second.sweep_lock():
                        done.set()

                worker = threading.Thread(target=sweep)
                worker.start()
                assert done.wait(10.0)
                worker.join(10.0)
        finally:
            first.close()
            second.close()


def test_sqlite_needs_no_store_lock(tmp_path) -> None:
    # One SQLite file belongs to one home, whose file lock serializes sweeps: nesting is fine.
    store = open_record_store(f"sqlite:///{tmp_path / 'records.db'}")
    try:
        with store.sweep_lock(), store.sweep_lock():
            assert store.active_holds() == []
    finally:
        store.close()
