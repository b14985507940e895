"""Fuzz: the worker's decoder (processor.batch) against a strict reference decoder.

Hypothesis writes message values a hostile or sloppy producer could: known
and unknown fields, duplicated fields (in any order), values of every JSON
type, whitespace, and plain garbage. The reference decodes with the standard
library keeping every pair, and says valid only for an object with distinct,
known fields that R3-R6 accept and an integer line (issue 14). The worker
must dead-letter exactly the values the reference calls invalid, and apply
the others. Runnable alone: `pytest tests/unit/test_message_fuzz.py`
(`make fuzz` runs it longer: FUZZ_EXAMPLES, tests/fuzzing.py).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import MalformedRow
from ledger.keys import Placement
from ledger.messages import FIELDS, row_from_message
from processor.batch import Record, apply_batch
from tests.fuzzing import examples

PARTITIONS = 4
placement = Placement(PARTITIONS)

values = st.one_of(
    st.integers(min_value=-5, max_value=2**65),
    st.sampled_from([0, 1, 7, 65_535, 65_536, 4_294_967_295, 10**15]),
    st.sampled_from(["deposit", "withdrawal", "dispute", "resolve", "chargeback", "x", ""]),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=2),
)
names = st.one_of(st.sampled_from(sorted(FIELDS)), st.text(max_size=6))


@st.composite
def message_values(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=40))  # garbage
    pairs = [("type", draw(st.sampled_from(["deposit", "withdrawal", "dispute", "chargeback"])))]
    pairs += [("client", draw(st.integers(0, 70_000))), ("tx", draw(st.integers(0, 2**33)))]
    if draw(st.booleans()):
        pairs.append(("amount", draw(st.one_of(st.integers(-1, 10**10), values))))
    if draw(st.booleans()):
        pairs.append(("line", draw(st.one_of(st.integers(0, 10**6), values))))
    pairs += draw(st.lists(st.tuples(names, values), max_size=2))  # extra, maybe duplicates
    pairs = draw(st.permutations(pairs))
    spaced = draw(st.booleans())
    colon, comma = (" : ", " , ") if spaced else (":", ",")
    body = comma.join(f"{json.dumps(k)}{colon}{json.dumps(v)}" for k, v in pairs)
    return ("{" + body + "}").encode()


def reference_is_valid(raw: bytes) -> bool:
    try:
        pairs = json.loads(raw, object_pairs_hook=lambda p: p)
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(pairs, list) or not all(isinstance(p, tuple) for p in pairs):
        return False
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys) or not set(keys) <= FIELDS:
        return False
    message: dict[str, Any] = dict(pairs)
    line = message.get("line")
    # An integer as the worker's decoder (orjson) holds one: past 64 bits it
    # decodes a float, and the line is then not an integer.
    if line is not None and (type(line) is not int or not -(2**63) <= line < 2**64):
        return False
    try:
        row_from_message(message)
    except MalformedRow:
        return False
    return True


def _placed(raw: bytes) -> tuple[bytes | None, int]:
    """The key and partition a well-behaved producer would give this value's client."""
    try:
        client = json.loads(raw).get("client")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return b"0", 0
    if type(client) is int and 0 <= client <= 65_535:
        return placement.of(client)
    return b"0", 0


@settings(max_examples=examples(3000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message_values())
def test_the_worker_dead_letters_exactly_what_a_strict_decoder_refuses(raw: bytes) -> None:
    key, partition = _placed(raw)
    outcome = apply_batch([Record("t", partition, 0, key, raw)], {}, {}, placement)
    dead = [reason for _record, reason, _detail in outcome.dead]
    assert (dead == ["malformed"]) == (not reference_is_valid(raw)), (raw, outcome.dead)
    for _record, _reason, detail in outcome.dead:
        assert len(detail) <= 200 and "\n" not in detail
