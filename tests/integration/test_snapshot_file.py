"""The file `export-snapshot --output` writes: atomic, private, and nobody can steer it.

processor.exporter.write_atomically writes through a temp file in the
target's directory. That file's name used to be predictable
(`.<name>.<pid>.tmp`), and it was opened following symlinks: anyone able to
write in the directory could plant a symlink there and have the balances
written into a file of their choosing (or read them, world-readable).
Real files, real symlinks, this process's pid: the name the old code used.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from processor.exporter import write_atomically

OLD = "client,available,held,total,locked\n1,1.0000,0.0000,1.0000,false\n"
NEW = "client,available,held,total,locked\n1,2.0000,0.0000,2.0000,false\n"


def _predictable(target: Path) -> Path:
    """Where the old code put its temp file."""
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def test_a_symlink_planted_at_the_old_temp_name_is_neither_followed_nor_moved(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours\n")
    target = tmp_path / "accounts.csv"
    trap = _predictable(target)
    trap.symlink_to(victim)

    write_atomically(target, NEW)

    assert victim.read_text() == "not yours\n"
    assert trap.is_symlink() and trap.readlink() == victim
    assert not target.is_symlink()
    assert target.read_text() == NEW


def test_a_file_already_at_the_old_temp_name_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "accounts.csv"
    squatter = _predictable(target)
    squatter.write_text("someone else's\n")

    write_atomically(target, NEW)

    assert squatter.read_text() == "someone else's\n"
    assert target.read_text() == NEW


def test_the_snapshot_is_readable_by_its_owner_alone_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "accounts.csv"
    target.write_text(OLD)
    target.chmod(0o644)  # replaced, not rewritten: the old file's mode does not carry over
    previous = os.umask(0o002)
    try:
        write_atomically(target, NEW)
    finally:
        os.umask(previous)

    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_an_asked_for_mode_is_given_exactly(tmp_path: Path) -> None:
    target = tmp_path / "accounts.csv"
    previous = os.umask(0o077)
    try:
        write_atomically(target, NEW, mode=0o640)
    finally:
        os.umask(previous)

    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_a_reader_sees_the_old_snapshot_or_the_new_one_never_a_part(tmp_path: Path) -> None:
    target = tmp_path / "accounts.csv"
    # Large enough that a write in place would be seen half done.
    old, new = OLD * 50_000, NEW * 50_000
    target.write_text(old)
    seen: set[str] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.add(target.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(20):
            write_atomically(target, new if n % 2 == 0 else old)
    finally:
        done.set()
        reader.join()

    assert seen <= {old, new}
    assert target.read_text() == old


def test_a_failed_write_leaves_the_old_snapshot_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "accounts.csv"
    target.write_text(OLD)

    with pytest.raises(UnicodeEncodeError):
        write_atomically(target, NEW + "\u20ac")  # the file is ASCII: fails mid-write

    assert target.read_text() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accounts.csv"]
