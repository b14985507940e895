"""processor.control_batches: which holes the markers the consumer read explain (issue 12)."""

from __future__ import annotations

from processor.control_batches import KEEP, ControlBatches


def test_a_hole_made_only_of_markers_read_is_explained() -> None:
    seen = ControlBatches()
    seen.note("t", 0, 5, 6)
    seen.note("t", 0, 6, 8)
    assert seen.covers("t", 0, 5, 8)
    assert seen.covers("t", 0, 6, 7)  # a range's start, within it


def test_a_hole_with_any_offset_not_read_as_a_marker_is_not_explained() -> None:
    seen = ControlBatches()
    seen.note("t", 0, 5, 6)
    seen.note("t", 0, 7, 8)
    assert not seen.covers("t", 0, 5, 8)  # offset 6 may be a record the consumer skipped
    assert not seen.covers("t", 0, 4, 6)
    assert not seen.covers("t", 1, 5, 6)  # another partition
    assert not seen.covers("u", 0, 5, 6)  # another topic


def test_forgotten_ranges_explain_nothing_and_the_registry_stays_bounded() -> None:
    seen = ControlBatches()
    seen.note("t", 0, 5, 6)
    seen.note("t", 0, 9, 10)
    seen.forget_below("t", 0, 7)
    assert not seen.covers("t", 0, 5, 6)
    assert seen.covers("t", 0, 9, 10)
    for first in range(100, 100 + KEEP + 10):
        seen.note("t", 1, first, first + 1)
    assert not seen.covers("t", 1, 100, 101)  # the oldest went first
    assert seen.covers("t", 1, 100 + KEEP + 9, 100 + KEEP + 10)


def test_a_position_reaches_past_the_markers_read_right_after_it_and_no_further() -> None:
    seen = ControlBatches()
    seen.note("t", 0, 5, 6)
    seen.note("t", 0, 6, 8)
    seen.note("t", 0, 9, 10)
    assert seen.reach("t", 0, 5) == 8  # offset 8 may be a record: stop there
    assert seen.reach("t", 0, 8) == 8
    assert seen.reach("t", 0, 4) == 4
    assert seen.reach("t", 1, 5) == 5  # another partition
