"""Fixed batches of a labelling run's sorted targets (:func:`sansa.targets.find_targets`).

A batch holds the same targets whatever a previous run finished, so results never depend on
where a run stopped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sansa.targets import Target


@dataclass(frozen=True)
class Batch:
    """A fixed batch: ``targets[i]`` is written only where ``write[i]`` (the others are done, but are
    encoded with the batch all the same, so that every result is computed in the same company)."""

    index: int
    targets: list[Target]
    write: list[bool]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "targets": [asdict(t) for t in self.targets], "write": list(self.write)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Batch:
        return cls(values["index"], [Target(**t) for t in values["targets"]], list(values["write"]))


def fixed_batches(targets: Sequence[Target], size: int) -> Iterator[tuple[int, list[Target]]]:
    """``(index, targets)`` of each batch of ``size`` consecutive targets of the sorted list."""
    for index, start in enumerate(range(0, len(targets), size)):
        yield index, list(targets[start : start + size])
