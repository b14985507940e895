"""Output rules R20-R21: the accounts as CSV, sorted by client, four decimals."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ledger.amounts import format_amount
from ledger.model import Account

HEADER = "client,available,held,total,locked\n"


def render_csv(accounts: Mapping[int, Account]) -> str:
    """The whole snapshot as one string, so a caller can write it in one go or not at all."""
    return "".join(_lines(sorted(accounts.items())))


def _lines(items: Iterable[tuple[int, Account]]) -> Iterable[str]:
    yield HEADER
    for client, account in items:
        yield (
            f"{client},{format_amount(account.available)},{format_amount(account.held)},"
            f"{format_amount(account.total)},{'true' if account.locked else 'false'}\n"
        )


def render_jsonl(accounts: Mapping[int, Account]) -> str:
    """One JSON object per account, sorted by client; amounts as the same 4-decimal strings.

    Strings, not numbers: a JSON number would be read as a float by most tools.
    """
    return "".join(
        f'{{"client":{client},"available":"{format_amount(a.available)}",'
        f'"held":"{format_amount(a.held)}","total":"{format_amount(a.total)}",'
        f'"locked":{"true" if a.locked else "false"}}}\n'
        for client, a in sorted(accounts.items())
    )
