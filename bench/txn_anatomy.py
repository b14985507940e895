"""Where a worker's transactions spend their time, from librdkafka's own debug log.

    LEDGER_PRODUCER_DEBUG=eos,protocol faust -A processor worker ...   # or:
    LEDGER_PRODUCER_DEBUG=eos,protocol python -m bench.bench_latency --logs DIR ...
    python -m bench.txn_anatomy DIR/run-1/worker-0.log [more logs]

With `LEDGER_PRODUCER_DEBUG=eos,protocol` each transactional producer of a
worker (processor.writer) logs every request it sends and the round trip of
every answer. This prints, over all producers of the logs given:

- per request type (Produce, AddPartitionsToTxn, EndTxn, ...): how many,
  and the median and 90th percentile round trip in ms;
- per committed transaction (one EndTxn): how many AddPartitionsToTxn and
  Produce requests it took, and the share of AddPartitionsToTxn requests
  the coordinator answered CONCURRENT_TRANSACTIONS (librdkafka then waits
  a fixed 20 ms before asking again).

The debug log costs the worker CPU, so figures taken with it on are for
the anatomy, not for the latency itself.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from bench.bench_latency import percentile

_RECEIVED = re.compile(r"rdkafka#producer-\d+\|.*Received (\w+)Response \(.*rtt ([0-9.]+)ms")
_CONCURRENT = re.compile(r"AddPartitionsToTxn response: .*concurrent operation", re.IGNORECASE)


def anatomy(lines: Iterable[str]) -> tuple[dict[str, list[float]], int]:
    """Round trips (ms) per request type, and AddPartitionsToTxn answers CONCURRENT_TRANSACTIONS."""
    rtts: dict[str, list[float]] = defaultdict(list)
    concurrent = 0
    for line in lines:
        found = _RECEIVED.search(line)
        if found:
            rtts[found.group(1)].append(float(found.group(2)))
        elif _CONCURRENT.search(line):
            concurrent += 1
    return rtts, concurrent


def report(rtts: dict[str, list[float]], concurrent: int) -> str:
    out = ["| request | answers | p50 rtt ms | p90 rtt ms |", "|---|---:|---:|---:|"]
    for kind, values in sorted(rtts.items(), key=lambda kv: -len(kv[1])):
        values.sort()
        out.append(
            f"| {kind} | {len(values):,} | {percentile(values, 50):.1f} "
            f"| {percentile(values, 90):.1f} |"
        )
    transactions = len(rtts.get("EndTxn", []))
    if transactions:
        adds = len(rtts.get("AddPartitionsToTxn", []))
        produces = len(rtts.get("Produce", []))
        out.append("")
        out.append(
            f"{transactions:,} transactions: {adds / transactions:.2f} AddPartitionsToTxn and "
            f"{produces / transactions:.2f} Produce requests each; "
            f"{concurrent:,} AddPartitionsToTxn answered CONCURRENT_TRANSACTIONS "
            f"({100 * concurrent / max(adds, 1):.1f}%)"
        )
    else:
        out.append("")
        out.append("no committed transaction in these logs (LEDGER_PRODUCER_DEBUG=eos,protocol?)")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("logs", type=Path, nargs="+", help="worker logs")
    args = parser.parse_args()
    print(report(*anatomy(_lines(args.logs))))


def _lines(paths: list[Path]) -> Iterator[str]:
    for path in paths:
        with path.open(errors="replace") as lines:
            yield from lines


if __name__ == "__main__":
    main()
