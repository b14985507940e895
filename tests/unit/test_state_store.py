"""state.store and state.slots on a real RocksDB in a temporary directory (issue 13)."""

from __future__ import annotations

from pathlib import Path

from state.slots import claim
from state.store import ACCOUNTS, DEPOSITS, Shared, Tuning, open_store

SHARED = Shared(Tuning(cache_bytes=8 * 1024**2, write_buffer_bytes=4 * 1024**2))


def test_a_committed_batch_and_its_position_come_back_after_a_reopen(tmp_path: Path) -> None:
    store, wiped = open_store(tmp_path / "p0", 0, SHARED)
    assert wiped is None and store.opened_empty
    store.commit([(0, b"7", b"[1,0,false,3,null]")], [(0, b"7:1", b"[1,0,3,null]")], (b"#p", b"5"))
    store.checkpoint({ACCOUNTS: 12, DEPOSITS: 4})
    store.close()
    again, _ = open_store(tmp_path / "p0", 0, SHARED)
    assert again.accounts == {b"7": b"[1,0,false,3,null]", b"#p": b"5"}
    assert again.deposits.get(b"7:1") == b"[1,0,3,null]" and again.deposits.get(b"7:2") is None
    assert (again.changelog_from(ACCOUNTS), again.changelog_from(DEPOSITS)) == (12, 4)
    again.close()


def test_changelog_records_apply_in_order_with_tombstones_and_their_offset(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path / "p1", 1, SHARED)
    store.apply_changelog(DEPOSITS, [(b"1:1", b"a"), (b"1:2", b"b"), (b"1:1", None)], 3)
    assert list(store.items(DEPOSITS)) == [(b"1:2", b"b")]
    assert store.changelog_from(DEPOSITS) == 3 and store.changelog_from(ACCOUNTS) == 0
    store.close()


def test_an_unreadable_store_is_wiped_and_reopened_empty(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path / "p2", 2, SHARED)
    store.commit([(2, b"9", b"x")], [], None)
    store.close()
    for f in (tmp_path / "p2").iterdir():
        if f.name.startswith("MANIFEST"):
            f.write_bytes(b"garbage")
    again, wiped = open_store(tmp_path / "p2", 2, SHARED)
    assert wiped is not None and again.accounts == {}
    again.close()


def test_each_process_gets_a_slot_of_its_own(tmp_path: Path) -> None:
    first = claim(tmp_path)
    second = claim(tmp_path)
    assert first.path != second.path
    first.release()
    assert claim(tmp_path).path == first.path  # a free slot is taken again
