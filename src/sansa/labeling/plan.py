"""A prepared labelling run (:func:`sansa.labeling.engine.prepare`): its batches formed as the
target listing arrives, what an earlier run finished, and the records of a finished run.

The batches are the fixed batches of the sorted target list (a batch holds the same targets
whatever an earlier run finished): :meth:`Plan.stream` hands them out one at a time, the first
after the listing's first page (:mod:`sansa.listing`), each formed a page at a time (stems
claimed in name order, finished targets found from the records and the listing's sizes and
times); :attr:`Plan.batches`, :attr:`Plan.targets` and :attr:`Plan.skipped` read the rest of the
listing first.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from sansa import fs
from sansa.export.writer import FolderWriter, TargetRecord
from sansa.labeling import folder as out_folder
from sansa.labeling.batches import Batch
from sansa.labeling.job import Job
from sansa.listing import Page
from sansa.spill import NameSet, SpilledList
from sansa.targets import Target, unchanged

if TYPE_CHECKING:
    from sansa.fs import AnyPath
    from sansa.labeling.engine import LoadedReference


@dataclass
class Plan:
    """A prepared run: the folder is locked and checked; what is left to do is worked out as the
    target listing arrives (:meth:`stream`), or at once when :attr:`batches`, :attr:`targets` or
    :attr:`skipped` is asked for.

    Attributes:
        root: the folder target names are relative to.
        inputs: what results are made from (references, model); ``inputs_digest`` is in each record.
        writer: the driver's :class:`FolderWriter` (records of earlier runs loaded).
        pending: the batches with something to write, formed as they are asked for.
        to_write: targets to write in the batches formed so far.
        listed: whether the listing has ended (every batch formed).
        listed_targets: the targets listed so far, sorted by name, stems assigned (on disk, as
            the collections below: :mod:`sansa.spill`).
        listed_skipped: the names of those an earlier run finished (with the same inputs).
    """

    job: Job
    labels: list[str]
    root: Path
    references: list[LoadedReference]
    inputs: dict[str, Any]
    inputs_digest: str
    writer: FolderWriter
    lock: out_folder.FolderLock
    started: float = field(default_factory=time.time)
    pending: Iterator[Batch] = field(default_factory=lambda: iter(()))
    to_write: int = 0
    listed: bool = False
    listed_targets: SpilledList[Target] = field(default_factory=lambda: target_list())
    listed_skipped: NameSet = field(default_factory=NameSet)
    formed: list[Batch] = field(default_factory=list)  # formed, not yet handed out by stream()

    @property
    def out(self) -> AnyPath:
        return self.job.out_dir

    @property
    def batches(self) -> list[Batch]:
        """The fixed batches with something to write (``batch.write``) not yet handed out by
        :meth:`stream`; reads the rest of the listing first."""
        self.formed.extend(self.pending)
        return self.formed

    @property
    def targets(self) -> Sequence[Target]:
        """Every target, sorted by name, stems assigned (reads the rest of the listing first)."""
        self.formed.extend(self.pending)
        return self.listed_targets

    @property
    def skipped(self) -> NameSet:
        """Names of targets an earlier run finished (with the same inputs); reads the rest of the listing first."""
        self.formed.extend(self.pending)
        return self.listed_skipped

    def stream(self) -> Iterator[Batch]:
        """The batches with something to write, each handed out once, as the listing arrives (the
        first one after its first page): a run starts before the listing ends, and the driver never
        holds every batch. One iterator, safe to pull from several threads."""
        return _Handout(self)

    def close(self) -> None:
        """Release the output folder."""
        self.lock.release()


class _Handout(Iterator[Batch]):
    """:meth:`Plan.stream`: formed batches first, then the listing's, one thread at a time."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.lock = threading.Lock()
        self.backlog: collections.deque[Batch] = collections.deque()

    def __next__(self) -> Batch:
        with self.lock:
            if self.plan.formed:  # formed before (Plan.batches): handed out first
                self.backlog.extend(self.plan.formed)
                self.plan.formed.clear()
            return self.backlog.popleft() if self.backlog else next(self.plan.pending)


class Records(Sequence[TargetRecord]):
    """:attr:`RunResult.records`: the record of each of ``targets`` that has one, in their order,
    read from ``writer`` (kept on disk there) when asked for, so a million targets' records are
    never all Python objects. Which targets have one is worked out on first use."""

    def __init__(self, writer: FolderWriter, targets: Sequence[Target]) -> None:
        self._writer, self._targets = writer, targets
        self._with_record: SpilledList[str] | None = None

    @property
    def _names(self) -> SpilledList[str]:
        if self._with_record is None:
            names: SpilledList[str] = SpilledList(str, str)
            names.extend(t.name for t in self._targets if self._writer.has_record(t.name))
            self._with_record = names
        return self._with_record

    def __len__(self) -> int:
        return len(self._names)

    @overload
    def __getitem__(self, index: int) -> TargetRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[TargetRecord]: ...
    def __getitem__(self, index: int | slice) -> TargetRecord | list[TargetRecord]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        record = self._writer.record(self._names[index])
        assert record is not None  # names with a record only
        return record

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)


def form_batches(plan: Plan, pages: Iterator[Page], size: int) -> Iterator[Batch]:
    """The fixed batches of ``size`` consecutive targets of the sorted listing (a batch holds the
    same targets whatever was done before), a page at a time: stems claimed in name order, done
    targets found (:func:`_is_done`); yields those with something to write."""
    writer, index, members, write = plan.writer, 0, [], []
    for page in pages:
        targets = [Target(t.path, t.name, writer.claim_stem(t.name)) for t, _ in page]
        stats = {t.path: stat for t, stat in page if stat is not None}
        done = _done_flags(writer, targets, plan.inputs_digest, stats)
        plan.listed_targets += targets
        plan.listed_skipped += [t.name for t, d in zip(targets, done, strict=True) if d]
        for target, finished in zip(targets, done, strict=True):
            members.append(target)
            write.append(not finished)
            if len(members) == size:
                if any(write):
                    plan.to_write += sum(write)
                    yield Batch(index, members, write)
                index, members, write = index + 1, [], []
    if members and any(write):
        plan.to_write += sum(write)
        plan.listed = True
        yield Batch(index, members, write)
    plan.listed = True


def target_list() -> SpilledList[Target]:
    """An empty list of targets on disk."""
    return SpilledList(_encode_target, _decode_target)


def _encode_target(target: Target) -> str:
    return json.dumps([target.path, target.name, target.stem], ensure_ascii=False)


def _decode_target(data: str) -> Target:
    path, name, stem = json.loads(data)
    return Target(path, name, stem)


STAT_THREADS = 32  # requests in flight asking a store whether targets changed


def _done_flags(
    writer: FolderWriter, targets: Sequence[Target], digest: str, stats: dict[str, dict[str, int]]
) -> list[bool]:
    """:func:`_is_done` of each target (``stats``: sizes and times known from the listing); for
    targets on a store whose listing did not tell, many requests in flight."""

    if not targets or not fs.is_url(targets[0].path) or all(t.path in stats for t in targets):
        return [_is_done(writer, t, digest, stats.get(t.path)) for t in targets]

    with ThreadPoolExecutor(STAT_THREADS, "sansa-stat") as pool:
        return list(pool.map(lambda t: _is_done(writer, t, digest, stats.get(t.path)), targets))


def _is_done(writer: FolderWriter, target: Target, digest: str, stat: dict[str, int] | None = None) -> bool:
    """Finished by an earlier run from the same inputs, and the target file unchanged since."""
    record = writer.record(target.name)
    if record is None or not writer.is_done(target.name):
        return False
    made_from = record.made_from or {}
    return made_from.get("inputs") == digest and unchanged(target.path, made_from.get("target"), stat)
