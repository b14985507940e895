"""One input partition's state on local disk: a RocksDB database of its own.

Layout (one keyspace, so that one RocksDB write batch covers everything a
Kafka transaction covered):

    b"a" + key   an accounts-table entry, as in the changelog (processor.state),
                 the partition's position record `#position:<p>` included
    b"d" + key   a deposits-table entry
    b"m" + name  this store's own bookkeeping:
                 `from:accounts`, `from:deposits`: the changelog offset to read
                 from to bring the store up to date (everything below it is in
                 the store); `format`: the layout's version

Why the store is written only after the batch's transaction commits
(`commit`): the local copy is then never ahead of the changelog, except for
a process that dies between the two writes, which leaves it behind (fine:
the restore reads the tail). Why `from:` offsets are recorded separately and
only now and then (`checkpoint`): the producer does not report the offsets
of what it wrote (one Python call per record would cost ~20% of a worker),
so the offsets come from a question to the broker, asked while no
transaction of ours is open; any offset at or below the first record the
store lacks is safe, a stale one only makes the restore read more.

Accounts stay in memory as well (at most 65,536 clients, SPEC R3: a few MB);
deposits, which grow without bound, are read from RocksDB, whose block cache
and write buffers are bounded and shared by all stores of the process.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from rocksdict import (
    AccessType,
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
    WriteOptions,
)

ACCOUNTS, DEPOSITS = "accounts", "deposits"
TABLES = (ACCOUNTS, DEPOSITS)
_PREFIX = {ACCOUNTS: b"a", DEPOSITS: b"d"}
_FROM = {ACCOUNTS: b"mfrom:accounts", DEPOSITS: b"mfrom:deposits"}
#: Bumped when the layout changes: a store of another format is read again from the changelogs.
FORMAT = b"1"
_FORMAT_KEY = b"mformat"


class Unreadable(Exception):
    """The store's files cannot be opened or read: it is wiped and restored."""


@dataclass(frozen=True)
class Tuning:
    """Memory RocksDB may use, for all stores of a process together."""

    cache_bytes: int = 64 * 1024**2
    write_buffer_bytes: int = 32 * 1024**2


class Shared:
    """The block cache and write-buffer budget every store of the process draws on."""

    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning
        self.cache = Cache(tuning.cache_bytes)
        # Memtables are charged to the cache too: one bound for both.
        self.write_buffers = WriteBufferManager.new_write_buffer_manager_with_cache(
            tuning.write_buffer_bytes, False, self.cache
        )

    def options(self) -> Options:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_paranoid_checks(True)
        table = BlockBasedOptions()
        table.set_block_cache(self.cache)
        table.set_bloom_filter(10, False)
        # Index and filter blocks live in the bounded cache, not beside it
        # (memory flat as deposits grow), and are partitioned: each lookup of
        # a new deposit (R12's duplicate check, a miss nearly always) reads a
        # 4 KiB filter partition, under a small pinned top-level index.
        # With one whole-file filter block per SST file instead, every
        # eviction of a filter meant re-reading megabytes for the next miss:
        # measured (8 stores, 64 MB cache), a miss cost 3.9 us at 1M
        # deposits and 13.8 us at 4M; partitioned, 3.0 and 5.3 us (9 us at
        # 10M; a bigger cache does not change it: the rest is the LSM's levels).
        table.set_cache_index_and_filter_blocks(True)
        table.set_partition_filters(True)
        table.set_index_type(BlockBasedIndexType.two_level_index_search())
        table.set_pin_top_level_index_and_filter(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        options.set_write_buffer_manager(self.write_buffers)
        options.set_write_buffer_size(min(16 * 1024**2, self.tuning.write_buffer_bytes))
        options.set_compression_type(DBCompressionType.lz4())
        options.set_max_open_files(128)
        return options


class _Deposits:
    """The deposits table as the core reads it (`get`), straight from RocksDB."""

    def __init__(self, db: Rdict) -> None:
        self._db = db
        self._get = db.get

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        value = self._get(b"d" + key)
        return default if value is None else value

    def __getitem__(self, key: bytes) -> bytes:
        value = self._get(b"d" + key)
        if value is None:
            raise KeyError(key)
        return cast(bytes, value)

    def client_keys(self, client: int) -> list[bytes]:
        """Every stored deposit key of `client` (`b"<client>:<tx>"`), by a prefix scan."""
        prefix = b"d%d:" % client
        keys = []
        for key in self._db.keys(from_key=prefix):
            key = cast(bytes, key)
            if not key.startswith(prefix):
                break
            keys.append(key[1:])
        return keys

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self._get(b"d" + key) is not None


class PartitionStore:
    def __init__(self, path: Path, partition: int, shared: Shared) -> None:
        self.path = path
        self.partition = partition
        self._shared = shared
        self._write_options = WriteOptions()
        # No fsync per batch: RocksDB's write-ahead log recovers a consistent
        # prefix of write batches after a crash, and a store that lost its
        # last batches is only behind its changelog (the restore reads them).
        self._write_options.sync = False
        self._db: Rdict | None = None
        #: Every account of the partition (and its position record), as stored.
        self.accounts: dict[bytes, bytes] = {}
        self.deposits: _Deposits
        self.opened_empty = False
        self._open()

    def _open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            db = Rdict(str(self.path), self._shared.options(), access_type=AccessType.read_write())
        except Exception as exc:  # rocksdict raises Exception for every RocksDB status
            raise Unreadable(f"{self.path}: {exc}") from exc
        try:
            found = db.get(_FORMAT_KEY)
            if found is None:
                db.put(_FORMAT_KEY, FORMAT)
                found = FORMAT
            if found != FORMAT:
                raise Unreadable(f"{self.path}: store format {found!r}, expected {FORMAT!r}")
            accounts: dict[bytes, bytes] = {}
            for key, value in db.items(from_key=b"a"):
                key = cast(bytes, key)
                if not key.startswith(b"a"):
                    break
                accounts[key[1:]] = cast(bytes, value)
        except Unreadable:
            db.close()
            raise
        except Exception as exc:
            db.close()
            raise Unreadable(f"{self.path}: {exc}") from exc
        self._db = db
        self.accounts = accounts
        self.deposits = _Deposits(db)
        self.opened_empty = not accounts and self.changelog_from(ACCOUNTS) == 0

    @property
    def db(self) -> Rdict:
        assert self._db is not None, "store closed"
        return self._db

    def _int(self, key: bytes) -> int | None:
        raw = self.db.get(key)
        return None if raw is None else int(raw)

    def changelog_from(self, table: str) -> int:
        """The changelog offset a restore of `table` starts from."""
        return self._int(_FROM[table]) or 0

    def commit(
        self,
        account_writes: Iterable[tuple[int, bytes, bytes]],
        deposit_writes: Iterable[tuple[int, bytes, bytes | None]],
        position: tuple[bytes, bytes] | None,
    ) -> None:
        """A committed batch's entries and its position record, in one atomic write."""
        batch = WriteBatch(raw_mode=True)
        accounts = self.accounts
        changed = []
        for _partition, key, value in account_writes:
            batch.put(b"a" + key, value)
            changed.append((key, value))
        for _partition, key, deposit in deposit_writes:
            if deposit is None:
                batch.delete(b"d" + key)  # a tombstone (processor.batch, `forget_locked`)
            else:
                batch.put(b"d" + key, deposit)
        if position is not None:
            batch.put(b"a" + position[0], position[1])
            changed.append(position)
        self.db.write(batch, self._write_options)
        accounts.update(changed)

    def apply_changelog(
        self, table: str, records: list[tuple[bytes, bytes | None]], next_offset: int
    ) -> None:
        """Changelog records read in offset order, and where reading goes on: one atomic write."""
        prefix = _PREFIX[table]
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(prefix + key)
            else:
                batch.put(prefix + key, value)
        batch.put(_FROM[table], b"%d" % next_offset)
        self.db.write(batch, self._write_options)
        if table == ACCOUNTS:
            accounts = self.accounts
            for key, value in records:
                if value is None:
                    accounts.pop(key, None)
                else:
                    accounts[key] = value

    def checkpoint(self, offsets: dict[str, int]) -> None:
        """Record where a restore would start now (no batch of ours may be open meanwhile)."""
        batch = WriteBatch(raw_mode=True)
        for table, offset in offsets.items():
            batch.put(_FROM[table], b"%d" % offset)
        self.db.write(batch, self._write_options)

    def deposit_count(self) -> int:
        """RocksDB's estimate of the keys held (deposits, accounts and bookkeeping)."""
        return int(self.db.property_int_value("rocksdb.estimate-num-keys") or 0)

    def items(self, table: str) -> Iterator[tuple[bytes, bytes]]:
        prefix = _PREFIX[table]
        for key, value in self.db.items(from_key=prefix):
            key = cast(bytes, key)
            if not key.startswith(prefix):
                return
            yield key[1:], cast(bytes, value)

    def wipe(self) -> None:
        """Forget everything: the next restore reads the changelogs from their start."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._open()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class InUse(Exception):
    """The store is open elsewhere (RocksDB's lock): not damaged, and never wiped for it."""


def open_store(path: Path, partition: int, shared: Shared) -> tuple[PartitionStore, str | None]:
    """Open a partition's store; an unreadable one is wiped first. Returns (store, why wiped).

    Raises InUse if another handle holds it (this process's standby, say).
    """
    try:
        return PartitionStore(path, partition, shared), None
    except Unreadable as exc:
        if "lock" in str(exc).lower():
            raise InUse(str(exc)) from exc
        shutil.rmtree(path, ignore_errors=True)
        return PartitionStore(path, partition, shared), str(exc)
