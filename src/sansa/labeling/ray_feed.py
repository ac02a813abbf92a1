"""Blocks of batches fed to a Ray Data pipeline while the driver is still listing the targets.

A Ray Dataset made with ``from_items`` needs every row first; a run of a million targets would
wait for its whole listing. Here a driver thread (:class:`Feeder`) puts each block's rows into a
Ray queue (an actor holding at most :data:`QUEUED_BLOCKS` blocks) as soon as the listing has formed
its batches, and the Dataset's one read task (:class:`QueueDatasource`, no CPU reserved) takes
them out and hands them on, a block at a time, to the actor pool's ``map_batches``: the first
block starts after the listing's first page, and the driver holds a few blocks, not the list.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

QUEUED_BLOCKS = 8  # blocks listed ahead of the actors at most (each <= BLOCK_TARGETS targets)
WAIT_S = 1.0  # how often a waiting feeder looks whether it was stopped


def queue_datasource(queue: Any) -> Any:
    """A Ray Data ``Datasource`` with one read task giving each block of rows (``{"batch": [...]}``)
    that ``queue`` (a :class:`ray.util.queue.Queue`) holds, until it holds ``None``."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class QueueDatasource(Datasource):
        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, *args: Any, **kwargs: Any) -> list[ReadTask]:
            def read() -> Iterator[Any]:
                import pyarrow as pa  # type: ignore[import-untyped]

                while (rows := queue.get()) is not None:
                    yield pa.table({"batch": rows})

            return [ReadTask(read, BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=None))]

        @property
        def supports_distributed_reads(self) -> bool:
            return False  # on the driver's node, beside the queue's producer

    return QueueDatasource()  # type: ignore[no-untyped-call]


class Feeder:
    """Puts ``blocks`` (each a list of row values) into a new Ray queue on a thread of its own,
    then ``None``. :meth:`close` stops it; :meth:`check` raises what the blocks' iterator raised
    (a listing that failed midway: the blocks fed before it are done all the same)."""

    def __init__(self, blocks: Iterator[list[str]]) -> None:
        from ray.util.queue import Queue

        self.queue: Any = Queue(maxsize=QUEUED_BLOCKS, actor_options={"num_cpus": 0})
        self._blocks = blocks
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sansa-feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for rows in self._blocks:
                if not self._put(rows):
                    return
        except BaseException as err:  # noqa: BLE001 (raised on the driver's thread by close())
            self._error = err
        self._put(None)

    def _put(self, item: Any) -> bool:
        from ray.util.queue import Full

        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=WAIT_S)
                return True
            except Full:
                continue
        return False

    def close(self) -> None:
        """Stop feeding (the run ended early), or wait for the feeder to have ended."""
        self._stop.set()
        self._thread.join()

    def check(self) -> None:
        """Once every block fed was done: raise the listing's error, if any."""
        self.close()
        if self._error is not None:
            raise self._error
