"""A batch's view of one table: what `ledger.Ledger` reads and writes during a batch.

Reads go to the table's store once per key and are cached; writes stay in the
view until the batch ends, when `changes()` yields each changed key once
(Kafka Streams' record cache does the same: one changelog record per touched
key per commit, not one per event).

Replay rule (docs/exactness.md): a stored entry whose offset is >= the offset
of the event reading it was written by a batch whose input offsets were never
committed, so this event is being applied for the second time; the entry's
`before` (its value as that batch began) is the state this event must see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Generic, TypeVar

from processor.state import Stored

V = TypeVar("V")
_MISSING = object()


class TableView(MutableMapping[int, V], Generic[V]):
    def __init__(
        self,
        store: Mapping[bytes, bytes],
        encode_key: Callable[[int], bytes],
        decode: Callable[[bytes], Stored],
        copy: Callable[[V], V],
    ) -> None:
        self._store = store
        self._encode_key = encode_key
        self._decode = decode
        self._copy = copy
        self._values: dict[int, V | None] = {}
        self._before: dict[int, V | None] = {}
        self._rolled_back: set[int] = set()
        self._dirty: set[int] = set()
        #: Offset of the event being applied; the batch loop sets it before each event.
        self.offset = 0

    def _load(self, key: int) -> V | None:
        raw = self._store.get(self._encode_key(key))
        value: V | None = None
        if raw is not None:
            stored = self._decode(raw)
            if stored.offset >= self.offset:
                value = stored.before  # type: ignore[assignment]
                self._rolled_back.add(key)
            else:
                value = stored.value  # type: ignore[assignment]
        self._before[key] = None if value is None else self._copy(value)
        self._values[key] = value
        return value

    def get(self, key: int, default: V | None = None) -> V | None:  # type: ignore[override]
        value = self._values.get(key, _MISSING)
        if value is _MISSING:
            value = self._load(key)
        return default if value is None else value  # type: ignore[return-value]

    def __getitem__(self, key: int) -> V:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and self.get(key) is not None

    def __setitem__(self, key: int, value: V) -> None:
        if key not in self._values:
            self._load(key)
        self._values[key] = value
        self._dirty.add(key)

    def __delitem__(self, key: int) -> None:
        raise TypeError("ledger entries are never deleted during processing")

    def __iter__(self) -> Iterator[int]:
        return iter(k for k, v in self._values.items() if v is not None)

    def __len__(self) -> int:
        return sum(1 for v in self._values.values() if v is not None)

    def changes(self, mutable_values: bool) -> Iterator[tuple[int, V, V | None]]:
        """(key, value, value before the batch) for every key the batch must write.

        A key is written if it was assigned, if its value object was changed in
        place (`mutable_values`: accounts are), or if it was rolled back: the
        stored entry is from an uncommitted batch and must be overwritten even
        when this batch ends where it started.
        """
        for key, value in self._values.items():
            if value is None:
                continue
            before = self._before[key]
            if (
                key in self._dirty
                or key in self._rolled_back
                or (mutable_values and value != before)
            ):
                yield key, value, before
