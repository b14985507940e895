"""The ingestion journal's decision and record format (producers.journal), no broker."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from producers.journal import (
    Action,
    Entry,
    argument_text,
    file_key,
    plan,
    source_key,
    transactional_id,
)

KEY = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


def entry(**kw: object) -> Entry:
    base = Entry(source=KEY, name="in.csv", run=1, lines=10, rows=8, complete=True)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_an_input_never_published_is_published_as_run_1() -> None:
    decision = plan(KEY, "in.csv", {}, force=False)
    assert decision.action is Action.PUBLISH
    assert (decision.entry.run, decision.entry.lines, decision.entry.complete) == (1, 0, False)


def test_an_input_published_completely_is_refused_without_force() -> None:
    decision = plan(KEY, "in.csv", {KEY: entry()}, force=False)
    assert decision.action is Action.REFUSE
    assert "already published completely" in decision.message
    assert "--force" in decision.message


def test_force_publishes_a_complete_input_again_as_the_next_run() -> None:
    decision = plan(KEY, "in.csv", {KEY: entry(run=2)}, force=True)
    assert decision.action is Action.PUBLISH
    assert (decision.entry.run, decision.entry.forced, decision.entry.lines) == (3, True, 0)


def test_an_unfinished_input_resumes_after_its_last_committed_line_even_with_force() -> None:
    for force in (False, True):
        decision = plan(KEY, "in.csv", {KEY: entry(complete=False, lines=7)}, force=force)
        assert decision.action is Action.RESUME
        assert decision.skip == 7
        assert decision.entry.rows == 8  # the count goes on from where it was


def test_a_complete_file_under_the_same_name_with_other_content_is_a_new_input() -> None:
    decision = plan(KEY, "in.csv", {OTHER: entry(source=OTHER)}, force=False)
    assert decision.action is Action.PUBLISH


def test_an_edited_half_published_file_is_refused_unless_forced() -> None:
    half = entry(source=OTHER, complete=False, lines=5)
    decision = plan(KEY, "in.csv", {OTHER: half}, force=False)
    assert decision.action is Action.REFUSE
    assert "stopped after line 5" in decision.message
    assert plan(KEY, "in.csv", {OTHER: half}, force=True).action is Action.PUBLISH
    # Another name's unfinished run is none of this file's business.
    assert plan(KEY, "other.csv", {OTHER: half}, force=False).action is Action.PUBLISH


def test_an_entry_survives_its_encoding() -> None:
    original = entry(offsets={0: [3, 9], 5: [0, 2]}, forced=True)
    assert Entry.decode(original.encode()) == original


def test_progress_keeps_each_partitions_first_offset_and_moves_its_end() -> None:
    start = entry(offsets={0: [3, 3], 1: [7, 7]})
    later = start.progressed(lines=20, rows=15, malformed=1, ends={0: 9, 1: 7, 2: 4})
    assert later.offsets == {0: [3, 9], 1: [7, 7], 2: [4, 4]}
    assert (later.lines, later.rows, later.malformed) == (20, 15, 1)


def test_a_file_is_known_by_its_content_not_its_name(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    a.write_bytes(b"type,client,tx,amount\ndeposit,1,1,1.0\n")
    b.write_bytes(a.read_bytes())
    c.write_bytes(b"type,client,tx,amount\ndeposit,1,1,2.0\n")
    assert file_key(a) == file_key(b) != file_key(c)
    assert file_key(a).startswith("sha256:")


def test_transactional_ids_are_valid_for_any_source_id() -> None:
    tid = transactional_id("transactions", source_key("nightly batch / 2026-11-27"))
    assert tid.startswith("ingest-transactions-")
    assert " " not in tid and "/" not in tid
    assert tid != transactional_id("transactions", source_key("nightly batch / 2026-11-28"))


def test_a_name_read_under_an_ascii_locale_is_stored_as_a_utf8_locale_would_store_it() -> None:
    # What Python makes of the bytes of "dép.csv" under LC_ALL=C with PYTHONUTF8=0.
    ascii_locale = "d\udcc3\udca9p.csv"
    entry = Entry(source=source_key(ascii_locale), name=argument_text(ascii_locale), run=1)

    assert entry.name == "d\u00e9p.csv"
    assert entry.source == "source:d\u00e9p.csv"
    assert Entry.decode(entry.encode()) == entry


def test_a_name_that_is_not_utf8_is_stored_escaped() -> None:
    assert argument_text("\udcff.csv") == "\\xff.csv"
