"""Collections that grow with a run's targets, kept on disk: the driver of a run of a million (or ten
million) targets holds a few MB of them in memory, whatever the count.

Each collection is a private temporary SQLite database (``sqlite3.connect("")``): SQLite keeps it in
its page cache (at most :data:`CACHE_KIB`) and moves the rest to a file in the temporary folder
(:func:`temporary_folder`: ``SQLITE_TMPDIR``, ``TMPDIR``, else ``/var/tmp``), removed when the
collection is closed or garbage-collected. Every operation holds the
collection's lock, so threads may share one.

Order: :class:`SpilledMapping` and :class:`NameSet` iterate their keys sorted as Python sorts
``str`` (SQLite compares text by its UTF-8 bytes, which is code point order);
:class:`SpilledList` keeps the order items were appended in.

    >>> names = NameSet()
    >>> names.update(["b.png", "a.png", "b.png"])
    >>> list(names), len(names), "a.png" in names
    (['a.png', 'b.png'], 2, True)
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence, Set
from typing import Any, Generic, TypeVar, overload

from sansa.errors import SansaError

CACHE_KIB = 2048  # SQLite's page cache per collection: what stays in memory
PAGE = 1000  # rows read at a time when iterating
IN_CHUNK = 500  # names asked about in one query (SQLite allows at least 999 parameters)

T = TypeVar("T")
V = TypeVar("V")


class _Database:
    """One private temporary SQLite database, used under a lock; SQLite errors (a full temporary
    folder) become one line naming the folder."""

    def __init__(self, schema: str) -> None:
        self.lock = threading.RLock()  # a collection holds it around a change and its count
        self.connection = self._guard(lambda: sqlite3.connect("", check_same_thread=False, isolation_level=None))
        self.script(
            f"PRAGMA cache_size = -{CACHE_KIB}; PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF; {schema}"
        )

    def script(self, sql: str) -> None:
        with self.lock:
            self._guard(lambda: self.connection.executescript(sql))

    def rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """The rows of one query."""
        with self.lock:
            return self._guard(lambda: self.connection.execute(sql, parameters).fetchall())

    def change(self, sql: str, parameters: Sequence[Any] = ()) -> int:
        """Run one statement; how many rows it changed."""
        with self.lock:
            return self._guard(lambda: self.connection.execute(sql, parameters).rowcount)

    def change_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Run ``sql`` for each of ``rows`` in one transaction; how many rows changed."""
        with self.lock:

            def run() -> int:
                self.connection.execute("BEGIN")
                try:
                    count = self.connection.executemany(sql, rows).rowcount
                except BaseException:
                    if self.connection.in_transaction:  # (SQLite rolls back itself when full)
                        self.connection.execute("ROLLBACK")
                    raise
                self.connection.execute("COMMIT")
                return count

            return self._guard(run)

    def locked(self, work: Callable[[sqlite3.Connection], V]) -> V:
        """``work(connection)`` under the lock (several statements, nothing in between)."""
        with self.lock:
            return self._guard(lambda: work(self.connection))

    def close(self) -> None:
        with self.lock:
            self.connection.close()

    @staticmethod
    def _guard(call: Callable[[], V]) -> V:
        try:
            return call()
        except sqlite3.Error as err:
            raise SansaError(
                f"{temporary_folder()}: the run's temporary records failed ({err}); "
                "set SQLITE_TMPDIR to a folder with room and run again to resume"
            ) from None


def temporary_folder() -> str:
    """Where SQLite puts the collections' files: as SQLite chooses on Unix (``SQLITE_TMPDIR``,
    ``TMPDIR``, then the first writable of ``/var/tmp``, ``/usr/tmp``, ``/tmp``); elsewhere
    Python's temporary folder."""
    if os.name != "posix":
        return tempfile.gettempdir()
    candidates = [os.environ.get("SQLITE_TMPDIR"), os.environ.get("TMPDIR"), "/var/tmp", "/usr/tmp", "/tmp"]
    return next((c for c in candidates if c and os.path.isdir(c) and os.access(c, os.W_OK | os.X_OK)), ".")


def _sorted_rows(db: _Database, table: str, columns: str) -> Iterator[tuple[Any, ...]]:
    """The rows of ``table`` in the order of its key (the first of ``columns``), :data:`PAGE` at a
    time, each page asked for after the last key seen (rows added meanwhile after it are seen too)."""
    key = columns.split(",")[0].strip()
    after: str | None = None
    while True:
        where, parameters = ("", ()) if after is None else (f"WHERE {key} > ?", (after,))
        rows = db.rows(f"SELECT {columns} FROM {table} {where} ORDER BY {key} LIMIT {PAGE}", parameters)
        yield from rows
        if len(rows) < PAGE:
            return
        after = rows[-1][0]


def _present(db: _Database, table: str, key: str, values: Iterable[str]) -> set[str]:
    """Those of ``values`` that are keys of ``table``, :data:`IN_CHUNK` per query."""
    found: set[str] = set()
    for chunk in _chunks(set(values), IN_CHUNK):
        marks = ",".join("?" * len(chunk))
        found.update(row[0] for row in db.rows(f"SELECT {key} FROM {table} WHERE {key} IN ({marks})", chunk))
    return found


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class SpilledMapping(MutableMapping[str, V], Generic[V]):
    """``str`` -> value on disk, each value stored as the bytes ``encode`` makes of it and decoded when
    read (the last value read or set is kept, so reading one name again costs nothing); keys
    iterate sorted.

    Args:
        encode: value -> ``bytes`` (or ``str``) to store.
        decode: the inverse.
    """

    def __init__(self, encode: Callable[[V], bytes | str], decode: Callable[[Any], V]) -> None:
        self._db = _Database("CREATE TABLE items (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;")
        self._encode, self._decode = encode, decode
        self._count = 0
        self._last: tuple[str, V] | None = None

    def __getitem__(self, key: str) -> V:
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        value = self._decode(self.encoded(key))
        self._last = (key, value)
        return value

    def encoded(self, key: str) -> Any:
        """The stored bytes of ``key`` (``KeyError`` if absent)."""
        rows = self._db.rows("SELECT value FROM items WHERE key = ?", (key,))
        if not rows:
            raise KeyError(key)
        return rows[0][0]

    def __setitem__(self, key: str, value: V) -> None:
        data = self._encode(value)

        def upsert(connection: sqlite3.Connection) -> int:
            if connection.execute("UPDATE items SET value = ? WHERE key = ?", (data, key)).rowcount:
                return 0
            return connection.execute("INSERT INTO items VALUES (?, ?)", (key, data)).rowcount

        with self._db.lock:
            self._count += self._db.locked(upsert)
        self._last = (key, value)

    def setdefault(self, key: str, default: V) -> V:  # (one statement, atomic)
        with self._db.lock:
            added = self._db.change("INSERT OR IGNORE INTO items VALUES (?, ?)", (key, self._encode(default)))
            self._count += added
        return default if added else self[key]

    def update_many(self, items: Iterable[tuple[str, V]]) -> None:
        """Set many keys in one transaction (a later item of a key replaces an earlier one)."""
        for chunk in _chunks(items, PAGE):
            rows = [(key, self._encode(value)) for key, value in chunk]
            with self._db.lock:
                before = self._known(key for key, _ in chunk)
                self._db.change_many("INSERT OR REPLACE INTO items VALUES (?, ?)", rows)
                self._count += len({key for key, _ in chunk} - before)
        self._last = None

    def __delitem__(self, key: str) -> None:
        with self._db.lock:
            if not self._db.change("DELETE FROM items WHERE key = ?", (key,)):
                raise KeyError(key)
            self._count -= 1
        if self._last is not None and self._last[0] == key:
            self._last = None

    def __contains__(self, key: object) -> bool:
        return bool(self._db.rows("SELECT 1 FROM items WHERE key = ?", (key,)))

    def _known(self, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` present."""
        return _present(self._db, "items", "key", keys)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        return (row[0] for row in self._pages("key"))

    def sorted_items(self) -> Iterator[tuple[str, V]]:
        """``(key, value)`` in key order, a page at a time."""
        return ((key, self._decode(value)) for key, value in self._pages("key, value"))

    def _pages(self, columns: str) -> Iterator[tuple[Any, ...]]:
        return _sorted_rows(self._db, "items", columns)

    def close(self) -> None:
        """Free the database now (it is freed when the mapping is garbage-collected anyway)."""
        self._db.close()


class NameSet(Set[str]):
    """A set of names on disk, iterated sorted; ``+=`` adds names (as :meth:`update`)."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._db = _Database("CREATE TABLE names (name TEXT PRIMARY KEY) WITHOUT ROWID;")
        self._count = 0
        self.update(names)

    def add(self, name: str) -> None:
        with self._db.lock:
            self._count += self._db.change("INSERT OR IGNORE INTO names VALUES (?)", (name,))

    def update(self, names: Iterable[str]) -> None:
        for chunk in _chunks(names, PAGE):
            with self._db.lock:
                self._count += self._db.change_many("INSERT OR IGNORE INTO names VALUES (?)", [(n,) for n in chunk])

    def __iadd__(self, names: Iterable[str]) -> NameSet:
        self.update(names)
        return self

    def known(self, names: Iterable[str]) -> set[str]:
        """Those of ``names`` in the set (one query per :data:`IN_CHUNK` names)."""
        return _present(self._db, "names", "name", names)

    def __contains__(self, name: object) -> bool:
        return bool(self._db.rows("SELECT 1 FROM names WHERE name = ?", (name,)))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        return (row[0] for row in _sorted_rows(self._db, "names", "name"))

    def __eq__(self, other: object) -> bool:
        """Equal to a set of the same names, or to a list of them in sorted order."""
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and list(self) == list(other)
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        shown = list(itertools.islice(self, 5))
        return f"NameSet({shown}{' ...' if len(self) > 5 else ''}, {len(self)} names)"


class SpilledList(Sequence[T], Generic[T]):
    """An append-only list on disk, each item stored as the bytes ``encode`` makes of it.

    Args:
        encode: item -> ``bytes`` (or ``str``) to store.
        decode: the inverse.
    """

    def __init__(self, encode: Callable[[T], bytes | str], decode: Callable[[Any], T]) -> None:
        self._db = _Database("CREATE TABLE items (position INTEGER PRIMARY KEY, value BLOB);")
        self._encode, self._decode = encode, decode
        self._count = 0

    def append(self, item: T) -> None:
        self.extend([item])

    def extend(self, items: Iterable[T]) -> None:
        for chunk in _chunks(items, PAGE):
            encoded = [self._encode(item) for item in chunk]
            with self._db.lock:
                rows = [(self._count + i, data) for i, data in enumerate(encoded)]
                self._db.change_many("INSERT INTO items VALUES (?, ?)", rows)
                self._count += len(rows)

    def __iadd__(self, items: Iterable[T]) -> SpilledList[T]:
        self.extend(items)
        return self

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._count)
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            rows = self._db.rows(
                "SELECT value FROM items WHERE position >= ? AND position < ? ORDER BY position", (start, stop)
            )
            return [self._decode(row[0]) for row in rows]
        position = index + self._count if index < 0 else index
        if not 0 <= position < self._count:
            raise IndexError("SpilledList index out of range")
        return self._decode(self._db.rows("SELECT value FROM items WHERE position = ?", (position,))[0][0])

    def __iter__(self) -> Iterator[T]:
        for start in range(0, self._count, PAGE):
            yield from self[start : start + PAGE]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(other) == len(self) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        shown = self[:5]
        return f"SpilledList({shown}{' ...' if len(self) > 5 else ''}, {len(self)} items)"
