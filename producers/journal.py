"""The ingestion journal: how far produce-csv got with each input, kept on Kafka.

Why: withdrawals carry no id the ledger could deduplicate on (SPEC R13), so a
file published twice debits every withdrawal twice, and an interrupted run
re-run from the top publishes its first part twice. The journal lets
produce-csv know what it already published.

Where: a compacted topic (`<transactions topic>-ingest` unless
LEDGER_INGEST_TOPIC says otherwise), one partition, one record per input:

- key: the input's identity. A file is its content, `sha256:<hex>` (a file
  renamed is the same input; a file edited is a new one). Standard input
  has no content to hash before it is read: `source:<id>`, the id the
  caller gives with `--source-id`.
- value: an `Entry` (JSON): how many input lines are decided (published, or
  malformed and reported), rows published, the partition offsets holding
  them, complete or not, and which publication of that input it is (`run`:
  1, then one more each time `--force` publishes it again).

How the journal and the rows never disagree: produce-csv is a
transactional producer (`transactional.id = ingest-<topic>-<key digest>`).
Every transaction holds a chunk of rows and, last, the journal record that
counts them, so a read_committed reader (every worker, the journal reader
below) sees both or neither. A produce-csv killed at any moment leaves an
open transaction; the next run of the same input calls `init_transactions`
with the same id, which aborts it, then reads the journal: it resumes after
the last committed line. Two runs of the same input at once fence each
other the same way: the older one's next commit is refused.

Nothing here imports Kafka client code but the journal reader, so the
decision (`plan`) is a pure function with unit tests.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

FILE_PREFIX = "sha256:"
SOURCE_PREFIX = "source:"
#: Read in pieces this big to hash a file: bounded memory whatever its size.
HASH_CHUNK = 1 << 20


def file_key(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return FILE_PREFIX + digest.hexdigest()


def source_key(source_id: str) -> str:
    return SOURCE_PREFIX + argument_text(source_id)


def argument_text(arg: str) -> str:
    """A path or id from the command line as the text the journal stores (JSON: UTF-8).

    Python holds the bytes of an argument it cannot decode (any non-ASCII
    byte under LC_ALL=C with PYTHONUTF8=0, or a name that is not UTF-8) as
    lone surrogates, which JSON cannot carry. Their UTF-8 reading, the rest
    escaped, is the same text whatever the locale of the run.
    """
    return os.fsencode(arg).decode("utf-8", "backslashreplace")


def transactional_id(topic: str, key: str) -> str:
    """One transactional id per input and topic: a re-run of the same input fences the last one.

    Hashed, so any source id (spaces, slashes, any length) makes a valid id.
    """
    return f"ingest-{topic}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Entry:
    """What the journal says of one input (the value of its record)."""

    source: str
    #: The path or name it was published under, for people (the key is what counts).
    name: str
    #: 1 for the first publication, +1 for each `--force`.
    run: int
    #: Input lines decided, header included: every row up to this line is
    #: published (or was malformed and reported); a resumed run starts after it.
    lines: int = 0
    #: Rows published by this run so far.
    rows: int = 0
    malformed: int = 0
    #: partition -> [from, to): the offsets of the input topic holding this
    #: run's rows (the ends before the run started and after its last
    #: commit; other producers' rows may lie in between).
    offsets: dict[int, list[int]] = field(default_factory=dict)
    started: str = ""
    updated: str = ""
    complete: bool = False
    #: This run was asked for with --force although an earlier one was complete.
    forced: bool = False

    def encode(self) -> bytes:
        value = asdict(self)
        value["offsets"] = {str(p): span for p, span in sorted(self.offsets.items())}
        return orjson.dumps(value)

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        value: dict[str, Any] = orjson.loads(raw)
        value["offsets"] = {int(p): list(span) for p, span in value.get("offsets", {}).items()}
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in value.items() if k in known})

    def progressed(self, lines: int, rows: int, malformed: int, ends: dict[int, int]) -> Entry:
        offsets = {p: [self.offsets.get(p, [end, end])[0], end] for p, end in ends.items()}
        return replace(
            self, lines=lines, rows=rows, malformed=malformed, offsets=offsets, updated=now()
        )


class Action(StrEnum):
    PUBLISH = "publish"
    RESUME = "resume"
    REFUSE = "refuse"


@dataclass(frozen=True)
class Plan:
    action: Action
    entry: Entry
    #: Lines already decided: skip them (RESUME), 0 otherwise.
    skip: int = 0
    #: Why, for the operator (REFUSE), or a note (RESUME after --force).
    message: str = ""


def plan(
    key: str,
    name: str,
    journal: dict[str, Entry],
    force: bool,
) -> Plan:
    """What to do with input `key` published as `name`, given the journal. Pure.

    - never published: publish it (run 1);
    - published part of the way: resume after its last committed line,
      with or without --force (starting over would publish the first part
      twice);
    - published completely: refuse, unless --force (a new run, recorded);
    - never published, but an unfinished publication of a different content
      under the same name exists: most likely that file was edited after it
      was half published. Publishing the new content from its first line
      would apply the old first half's rows a second time, so refuse unless
      --force (then it is a new input like any other).
    """
    fresh = Entry(source=key, name=name, run=1, started=now(), updated=now())
    previous = journal.get(key)
    if previous is None:
        unfinished = [
            e for e in journal.values() if e.name == name and not e.complete and e.source != key
        ]
        if unfinished and not force:
            other = unfinished[0]
            return Plan(
                Action.REFUSE,
                other,
                message=(
                    f"{name}: an earlier publication under this name, with different "
                    f"content ({other.source[:19]}...), stopped after line {other.lines} "
                    f"({other.rows} rows published). If this file is that one, edited, "
                    f"publishing it would apply those rows again; restore the original "
                    f"and re-run to finish it, or use --force to publish this content anyway"
                ),
            )
        return Plan(Action.PUBLISH, fresh)
    if not previous.complete:
        note = " (--force ignored: the run is unfinished)" if force else ""
        return Plan(Action.RESUME, previous, skip=previous.lines, message=note)
    if force:
        again = replace(fresh, run=previous.run + 1, forced=True)
        return Plan(Action.PUBLISH, again)
    return Plan(
        Action.REFUSE,
        previous,
        message=(
            f"{name}: already published completely ({previous.rows} rows, run "
            f"{previous.run}, finished {previous.updated}); nothing published. "
            f"Use --force to publish it again (every row applies again)"
        ),
    )


def read_journal(bootstrap: str, topic: str, isolation: str) -> dict[str, Entry]:
    """Every input's latest entry (committed ones only, under read_committed)."""
    from kafkaio.admin import read_to_end

    entries: dict[str, Entry] = {}
    for message in read_to_end(bootstrap, topic, 1, isolation):
        key, value = message.key(), message.value()
        if key is None:
            continue
        if value is None:  # a tombstone: that input was forgotten on purpose
            entries.pop(key.decode(), None)
        else:
            entries[key.decode()] = Entry.decode(value)
    return entries
