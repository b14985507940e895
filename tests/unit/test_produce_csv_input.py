"""produce-csv reads its input through the bounded line reader (R22, R23), broker or not.

`Publisher.publish` runs here on a real file opened as produce-csv opens it,
with a real librdkafka producer pointed at a port where no broker listens:
`produce` only queues, so what is tested is the reading, the validation and
the counting. The queue is purged at the end; nothing is ever sent.
"""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from producers.csv_producer import Publisher
from producers.progress import Progress
from runner.console import ErrorPolicy, RowReporter
from runner.inputs import open_input, read_chunks

BOM = b"\xef\xbb\xbf"
LONG = 50_000_000


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "log_level": 0})
    yield Publisher(producer, "transactions", Progress(enabled=False))
    producer.purge()
    producer.flush(0)


def _publish(publisher: Publisher, path: Path) -> list[str]:
    out = io.StringIO()
    with open_input(str(path)) as stream:
        publisher.publish(read_chunks(stream), RowReporter(ErrorPolicy.SKIP, out))
    return out.getvalue().splitlines()


def test_a_bom_then_the_header_publishes_every_row(publisher: Publisher, tmp_path: Path) -> None:
    # R22: the BOM is ignored, so line 1 is the header (R2), not a malformed row.
    path = tmp_path / "in.csv"
    path.write_bytes(BOM + b"type,client,tx,amount\r\ndeposit,1,1,1\r\ndeposit,2,2,1\r\n")

    assert _publish(publisher, path) == []
    assert (publisher.sent, publisher.last_line, publisher.lines) == (2, 3, 3)


def test_a_50_mb_line_is_one_malformed_line_read_in_bounded_memory(
    publisher: Publisher, tmp_path: Path
) -> None:  # R23
    path = tmp_path / "in.csv"
    with path.open("wb") as out:
        out.write(b"type,client,tx,amount\ndeposit,1,1,1\n")
        for _ in range(LONG // 1_000_000):
            out.write(b"deposit,1,1," * 83_333 + b"9999")  # 1,000,000 bytes, no newline
        out.write(b"\r\ndeposit,1,2,1")

    tracemalloc.start()
    try:
        reports = _publish(publisher, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # The detail gives the length, never the content; the line numbers after it hold.
    assert reports == [f"line 3: malformed: line is over 4096 bytes ({LONG} bytes)"]
    assert (publisher.sent, publisher.last_line, publisher.lines) == (2, 4, 4)
    # 1 MiB chunks (the file's buffer, the chunk in hand, the next one, a cut of one)
    # and at most the limit of the line: about 4 MiB, never the 50 MB line.
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB"
