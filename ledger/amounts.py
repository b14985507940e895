"""Money as an exact integer count of 1/10000 units (R5, R8, R21).

Binary floating point never touches an amount: text is parsed digit by digit
into an `int`, and formatted back with integer division.
"""

from __future__ import annotations

from ledger.errors import MalformedRow

SCALE = 10_000
FRACTION_DIGITS = 4
#: The largest magnitude any amount or balance may have: 922337203685477.5807,
#: i.e. a signed 64-bit count of 1/10000 units (R5, R9).
MAX_UNITS = 9_223_372_036_854_775_807

_LONG = 40
_SCALES = (10_000, 1_000, 100, 10, 1)  # by number of fraction digits


def parse_amount(raw: bytes) -> int:
    """Parse a trimmed amount field into units; raise MalformedRow if it breaks R5.

    Accepted shapes are exactly `[0-9]+(\\.[0-9]{0,4})?` and `\\.[0-9]{1,4}`:
    split at the first dot; what is left once it is dropped must be ASCII
    digits (`bytes.isdigit` admits only 0-9, so no sign, `_`, space or second
    dot gets through, and an empty string fails), scaled by how many fraction
    digits there were.
    """
    whole, _, fraction = raw.partition(b".")
    fraction_digits = len(fraction)
    if fraction_digits > FRACTION_DIGITS:
        raise MalformedRow(f"amount {_show(raw)} has more than 4 decimals")
    digits = whole + fraction
    if not digits.isdigit():
        raise MalformedRow(f"bad amount {_show(raw)}")
    units = (int(digits) if len(digits) < _LONG else digits_value(digits)) * _SCALES[
        fraction_digits
    ]
    if units > MAX_UNITS:
        raise MalformedRow(f"amount {_show(raw)} is above 922337203685477.5807")
    return units


def digits_value(digits: bytes) -> int:
    """Value of an all-ASCII-digit field, leading zeros allowed (R4, R5).

    `int()` refuses strings past 4300 digits, so long runs of leading zeros are
    dropped first; anything still that long is far beyond every bound we check,
    and a stand-in that is just as far beyond is returned.
    """
    if len(digits) > _LONG:
        digits = digits.lstrip(b"0") or b"0"
        if len(digits) > _LONG:
            return int(10**_LONG)
    return int(digits)


def format_amount(units: int) -> str:
    """Render units with exactly four decimals (R21): 5000 -> '0.5000', -5000 -> '-0.5000'."""
    if units < 0:
        whole, frac = divmod(-units, SCALE)
        return f"-{whole}.{frac:04d}"
    whole, frac = divmod(units, SCALE)
    return f"{whole}.{frac:04d}"


def _show(raw: bytes) -> str:
    text = raw.decode("utf-8", "backslashreplace")
    return repr(text if len(text) <= 40 else text[:37] + "...")
