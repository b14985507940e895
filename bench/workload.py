"""Seeded transaction workloads for benchmarks and tests.

`generate(rows, clients, seed)` yields CSV lines shaped like the bench
workload of the issues: ~60% deposits, ~30% withdrawals, the rest disputes,
resolves and chargebacks that reference earlier deposits of the same client.
`dirty=True` mixes in malformed rows and rule-breaking rows (unknown tx,
duplicates, other clients' tx) so every reject reason is exercised.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator

HEADER = "type,client,tx,amount\n"


def _amount(rng: random.Random) -> str:
    units = rng.randint(1, 5_000_000)  # up to 500.0000
    whole, frac = divmod(units, 10_000)
    text = f"{whole}.{frac:04d}"
    return text.rstrip("0").rstrip(".") if rng.random() < 0.5 else text


_GARBAGE = (
    "deposit,1,1,1.00001",
    "deposit,-1,2,1.0",
    "withdrawal,1,3,-5",
    'deposit,"1",4,1.0',
    "deposit,70000,5,1.0",
    "transfer,1,6,1.0",
    "deposit,1,7,1.0,extra",
    "deposit,1,99999999999,1.0",
    "deposit,1,8,0",
    "deposit,1,9,1e3",
    "DEPOSIT,1,10,1.0",
    "withdrawal,1,11",
    "deposit,1,12,",
)


def generate(rows: int, clients: int, seed: int, dirty: bool = False) -> Iterator[str]:
    rng = random.Random(seed)
    deposits: dict[int, list[int]] = {}
    next_tx = 1
    yield HEADER
    for _ in range(rows):
        client = rng.randint(1, clients)
        roll = rng.random()
        if dirty and roll < 0.02:
            yield rng.choice(_GARBAGE) + "\n"
            continue
        if dirty and roll < 0.04:
            # rule breakers: unknown tx, another client's tx, duplicate deposit, odd spacing
            choice = rng.randrange(4)
            if choice == 0:
                yield f"dispute,{client},{next_tx + 10_000_000},\n"
            elif choice == 1 and deposits:
                other = rng.choice(list(deposits))
                if deposits[other]:
                    yield f"dispute,{client},{rng.choice(deposits[other])},\n"
                    continue
                yield f"resolve,{client},1,\n"
            elif choice == 2 and deposits.get(client):
                yield f"deposit,{client},{rng.choice(deposits[client])},{_amount(rng)}\n"
            else:
                yield f" deposit , {client} , {next_tx} , {_amount(rng)} \r\n"
                deposits.setdefault(client, []).append(next_tx)
                next_tx += 1
            continue
        if roll < 0.60 or not deposits.get(client):
            tx = next_tx
            next_tx += 1
            deposits.setdefault(client, []).append(tx)
            yield f"deposit,{client},{tx},{_amount(rng)}\n"
        elif roll < 0.90:
            yield f"withdrawal,{client},{next_tx},{_amount(rng)}\n"
            next_tx += 1
        else:
            kind = rng.choices(("dispute", "resolve", "chargeback"), (5, 3, 2))[0]
            tx = rng.choice(deposits[client][-20:])
            yield f"{kind},{client},{tx},\n" if rng.random() < 0.5 else f"{kind},{client},{tx}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dirty", action="store_true")
    args = parser.parse_args()
    out = sys.stdout
    for line in generate(args.rows, args.clients, args.seed, args.dirty):
        out.write(line)


if __name__ == "__main__":
    main()
