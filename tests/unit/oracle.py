"""A deliberately naive second implementation of SPEC, used only as a test oracle.

It shares no code with `ledger`: a regex per field (written straight from the
SPEC's grammar), `Decimal` amounts and one generic range check after every
operation. The fast engine is tested against it on random inputs, which is
how the fast path and the readable path are kept the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

LIMIT = Decimal("922337203685477.5807")
TYPES = {"deposit", "withdrawal", "dispute", "resolve", "chargeback"}
_INT = re.compile(r"[0-9]+")
_AMOUNT = re.compile(r"[0-9]+(\.[0-9]{0,4})?|\.[0-9]{1,4}")


def oracle_parse(line: str) -> tuple[str, int, int, Decimal | None] | None:
    """None if the (non-blank, non-header) line is malformed."""
    if '"' in line:
        return None
    fields = [f.strip(" \t\r\n\x0b\x0c") for f in line.split(",")]
    if len(fields) not in (3, 4):
        return None
    kind, client, tx = fields[0], fields[1], fields[2]
    if kind not in TYPES or not _INT.fullmatch(client) or not _INT.fullmatch(tx):
        return None
    if int(client) > 65535 or int(tx) > 4294967295:
        return None
    if kind not in ("deposit", "withdrawal"):
        return kind, int(client), int(tx), None
    if len(fields) == 3 or not _AMOUNT.fullmatch(fields[3]):
        return None
    amount = Decimal(fields[3])
    if amount <= 0 or amount > LIMIT:
        return None
    return kind, int(client), int(tx), amount


@dataclass
class OracleAccount:
    available: Decimal = Decimal(0)
    held: Decimal = Decimal(0)
    locked: bool = False


@dataclass
class Oracle:
    accounts: dict[int, OracleAccount] = field(default_factory=dict)
    # (client, tx) -> [amount, "ok" | "disputed" | "charged_back"]
    deposits: dict[tuple[int, int], list[object]] = field(default_factory=dict)

    def apply(self, kind: str, client: int, tx: int, amount: Decimal | None) -> str | None:
        acct = self.accounts.setdefault(client, OracleAccount())
        if acct.locked:
            return "account_locked"
        key = (client, tx)
        saved_acct = (acct.available, acct.held, acct.locked)
        saved_dep = list(self.deposits[key]) if key in self.deposits else None
        reason = self._rule(acct, kind, client, tx, amount, self.deposits.get(key))
        if reason is None and not all(
            -LIMIT <= v <= LIMIT for v in (acct.available, acct.held, acct.available + acct.held)
        ):
            # One generic check after the fact, then undo: the opposite of the engine's style.
            acct.available, acct.held, acct.locked = saved_acct
            if saved_dep is None:
                self.deposits.pop(key, None)
            else:
                self.deposits[key] = saved_dep
            reason = "overflow"
        return reason

    def _rule(self, acct, kind, client, tx, amount, dep):  # type: ignore[no-untyped-def]
        if kind == "deposit":
            if dep is not None:
                return "duplicate"
            acct.available += amount
            self.deposits[(client, tx)] = [amount, "ok"]
            return None
        if kind == "withdrawal":
            if acct.available < amount:
                return "insufficient_funds"
            acct.available -= amount
            return None
        if dep is None:
            return "unknown_tx"
        if kind == "dispute":
            if dep[1] != "ok":
                return "already_disputed"
            acct.available -= dep[0]
            acct.held += dep[0]
            dep[1] = "disputed"
            return None
        if dep[1] != "disputed":
            return "not_disputed"
        acct.held -= dep[0]
        if kind == "resolve":
            acct.available += dep[0]
            dep[1] = "ok"
        else:
            dep[1] = "charged_back"
            acct.locked = True
        return None

    def snapshot(self) -> str:
        out = ["client,available,held,total,locked\n"]
        for client in sorted(self.accounts):
            a = self.accounts[client]
            out.append(
                f"{client},{a.available:.4f},{a.held:.4f},{a.available + a.held:.4f},"
                f"{'true' if a.locked else 'false'}\n"
            )
        return "".join(out)


def oracle_run(text: str) -> str:
    """The whole pipeline of the oracle: header, blank lines, parse, apply, render."""
    oracle = Oracle()
    first = True
    for line in text.split("\n"):
        if not line.strip(" \t\r\n\x0b\x0c"):
            continue
        if first:
            first = False
            if [f.strip(" \t\r\n\x0b\x0c") for f in line.split(",")] == [
                "type",
                "client",
                "tx",
                "amount",
            ]:
                continue
        row = oracle_parse(line)
        if row is not None:
            oracle.apply(*row)
    return oracle.snapshot()
