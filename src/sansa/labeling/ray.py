"""Running a labelling job on Ray Data: the same run as :func:`sansa.labeling.run`, on many processes.

The driver does what only one process may do; workers do the rest::

    driver                                  actors (--actors N, --gpus-per-actor G)
    ------                                  ---------------------------------------
    prepare: checks, discovery, lock,       load the model once;
      resume, fixed batches                 get the references' memory once (object store)
    encode the references once; ray.put  ->
    Dataset of batches of target paths   -> map_batches, one call per block (<= BATCHES_PER_BLOCK
      (blocks of <= BATCHES_PER_BLOCK)        fixed batches), pipelined as in one process:
                                                reader threads  decode + resize batch i+1, i+2
                                                model           segments batch i
                                                writer threads  write batch i-1, i-2 (files,
                                                                then record; atomic)
    finalise: annotations.json,          <- per batch: written / failed names (no pixels)
      yolo/data.yaml, classes.json,
      failures, run.json (after removing temporaries of actors killed mid-write)

The bytes are those of a one-process run: the same fixed batches of the sorted target list, the
same references' memory (computed once, on the driver), the same writer, the same pipelined loop
(:func:`~sansa.labeling.pipeline.pipelined_batches`; an actor's memory is bounded by its queues).
A task ships only its block's batches (target paths, names, stems). A block whose actor dies is
retried by Ray on a restarted actor (rewriting a target gives the same bytes); an unreadable image
is a failure entry; a driver killed and started again resumes like a one-process run (finished
targets are skipped).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sansa import atomic, fs
from sansa.errors import SansaError
from sansa.labeling import engine
from sansa.labeling.batches import Batch
from sansa.labeling.job import Job
from sansa.labeling.pipeline import Outcome, lane_batches, model_lanes

if TYPE_CHECKING:
    from sansa.records import Reference

# Fixed batches per Ray Data block (at most; small runs get smaller blocks, two per actor): a block
# is one actor call (pipelined through its batches) and the unit a dead actor's work is retried in.
BATCHES_PER_BLOCK = 4
_CONNECT_HELP = "start one with `ray start --head`, or leave the address out for a local instance"


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """Where and how wide a job runs on Ray.

    Attributes:
        address: ``None``: ``RAY_ADDRESS`` when set (as under ``ray job submit``), else a new
            local instance; ``"auto"``: the cluster already running on this machine; else a
            cluster address (``host:6379``, ``ray://host:10001``).
        actors: model replicas (default: as many as the cluster's GPUs allow with
            ``gpus_per_actor``, else one per CPU).
        gpus_per_actor: GPUs each actor reserves (fractions share a GPU); ``0``: CPU actors.
        on_actor_start: called in each actor once it is ready, with its handle (monitoring, and
            the fault tests that ``ray.kill`` an actor mid-run).
    """

    address: str | None = None
    actors: int | None = None
    gpus_per_actor: float = 0.0
    on_actor_start: Callable[[Any], None] | None = None

    def check(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise SansaError(f"--actors: must be at least 1, got {self.actors}")
        if self.gpus_per_actor < 0:
            raise SansaError(f"--gpus-per-actor: must be 0 or more, got {self.gpus_per_actor}")

    @property
    def device(self) -> str:
        """Where actors run the model: ``cuda`` when they reserve GPUs, else ``cpu``."""
        return "cuda" if self.gpus_per_actor > 0 else "cpu"


def run_ray(job: Job, notes: engine.Notes | None = None, command: str = "", **options: Any) -> engine.RunResult:
    """Run ``job`` on Ray (see the module docstring); :func:`sansa.labeling.run` with ``executor="ray"``.

    Args:
        job: a :class:`~sansa.labeling.job.Job`.
        options: :class:`RayOptions` fields (``address``, ``actors``, ``gpus_per_actor``, ...).

    Returns:
        The :class:`~sansa.labeling.engine.RunResult`, as a one-process run gives it.
    """

    ray_options = RayOptions(**options)
    ray_options.check()
    _import_ray()
    if job.batch_size is None and ray_options.gpus_per_actor > 0:
        from sansa.predictor import ACCELERATOR_BATCH_SIZE

        job = dataclasses.replace(job, batch_size=ACCELERATOR_BATCH_SIZE)  # the actors' device, not the driver's
    plan = engine.prepare(job, notes, command)
    try:
        connect(ray_options.address)
        predictor = job.model.load("cpu" if ray_options.device == "cpu" else None)
        references = engine.encode_references(predictor, plan)
        reference_files = engine.save_reference_pictures(plan, references)
        outcome = Outcome(skipped=list(plan.skipped))
        for batch_outcome in label_batches(job, plan.batches, plan.inputs_digest, references, ray_options):
            outcome.add(batch_outcome)
        atomic.remove_temporaries(plan.out)  # left by an actor killed mid-write; every actor is done now
        return engine.finalise(
            plan,
            outcome,
            references,
            reference_files,
            ray_options.device,
            reload=True,
            # the actors' precision; "auto" on GPU actors resolves there, after what the driver can see
            precision=job.model.resolved_precision("cpu")
            if ray_options.device == "cpu"
            else job.model.precision or "fp32",
        )
    finally:
        plan.close()


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` (see :class:`RayOptions`), unless this process already has."""
    ray = _import_ray()
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, configure_logging=False, log_to_driver=True)
    except (ConnectionError, ValueError, RuntimeError) as err:
        where = f"--ray {address}" if address else "--ray"
        raise SansaError(f"{where}: cannot join a Ray cluster ({_first_line(err)}); {_CONNECT_HELP}") from None


def label_batches(
    job: Job, batches: Sequence[Batch], inputs_digest: str, references: Sequence[Reference], options: RayOptions
) -> Iterator[Outcome]:
    """Process ``batches`` on an actor pool; yields each batch's
    :class:`~sansa.labeling.pipeline.Outcome` as it completes (in any order).

    Args:
        job: the job (shipped to each actor once, as JSON).
        batches: :class:`~sansa.labeling.batches.Batch` records with something to write.
        inputs_digest: kept in each target's record.
        references: the driver's encoded :class:`~sansa.records.Reference` records: their memory
            is put in the object store once and handed to each actor at construction.
    """
    ray = _import_ray()
    if not batches:
        return
    shipped = ray.put([shippable(reference) for reference in references])
    rows = [{"batch": json.dumps(batch.to_dict())} for batch in batches]
    actors = _pool_size(ray, options)
    blocks = min(len(rows), max(math.ceil(len(rows) / BATCHES_PER_BLOCK), 2 * actors))  # every actor gets work
    dataset = ray.data.from_items(rows, override_num_blocks=blocks)
    results = dataset.map_batches(
        LabelActor,
        batch_size=None,
        compute=ray.data.ActorPoolStrategy(size=actors),  # a whole block per call
        fn_constructor_kwargs={
            "job": for_workers(job).to_dict(),
            "references": [shipped],
            "inputs_digest": inputs_digest,
            "device": options.device,
            "on_start": options.on_actor_start,
        },
        num_cpus=1,
        num_gpus=options.gpus_per_actor or None,
    )
    try:
        for row in results.iter_rows():
            yield Outcome.from_dict(json.loads(row["outcome"]))
    except ray.exceptions.RayError as err:  # not an unreadable image (a failure entry): the output, the model
        raise SansaError(
            f"a batch failed on Ray ({_cause(err)}); finished targets are kept, run the same command again to resume"
        ) from None


class LabelActor:
    """One model replica of the pool: loads the model once, takes the references' memory from the
    object store once, then segments and writes one block of fixed batches per call, reading
    ahead of the model and writing behind it (:func:`~sansa.labeling.pipeline.pipelined_batches`).

    Args:
        job: :meth:`Job.to_dict` of the run.
        references: ``[ObjectRef]`` of the shippable references (wrapped, so Ray hands the
            reference to this constructor and it is fetched here, once).
        inputs_digest: kept in each target's record.
        device: where to run the model.
        cpus: the CPUs it reserves: lanes of batches segmented at once on the CPU.
        on_start: see :attr:`RayOptions.on_actor_start`.
    """

    def __init__(
        self,
        job: dict[str, Any],
        references: list[Any],
        inputs_digest: str,
        device: str,
        cpus: float = 1.0,
        on_start: Callable[[Any], None] | None = None,
    ) -> None:
        import ray

        self.job = Job.from_dict(job)
        self.predictor = self.job.model.load(device)
        self.lanes = model_lanes(self.predictor, max(1, int(cpus)))
        for reference in ray.get(references[0]):
            self.predictor.add_encoded(reference)
        self.writer = engine.writer_for(self.job, worker=True)
        self.inputs_digest = inputs_digest
        if on_start is not None:
            on_start(ray.get_runtime_context().current_actor)

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, list[str]]:
        """``rows["batch"]``: a block's JSON batches -> ``{"outcome": [JSON outcome per batch]}``, in
        order; an unreadable target is a failure entry in its batch's outcome, as in one process."""

        batches = [Batch.from_dict(json.loads(str(text))) for text in rows["batch"]]
        outcomes = lane_batches(self.predictor, self.writer, batches, self.inputs_digest, self.lanes)
        return {"outcome": [json.dumps(outcome.to_dict()) for outcome in outcomes]}


def for_workers(job: Job) -> Job:
    """``job`` with its output folder and model files as absolute paths (workers run elsewhere)."""

    def absolute(path: str | None) -> str | None:
        if path is None or fs.is_url(path) or not Path(path).expanduser().exists():
            return path
        return str(Path(path).expanduser().resolve())

    model = dataclasses.replace(
        job.model,
        sam2_checkpoint=absolute(job.model.sam2_checkpoint),
        adapter=absolute(job.model.adapter),
        backbone=absolute(job.model.backbone),
    )
    out = job.out if fs.is_url(job.out) else str(Path(job.out).expanduser().resolve())
    return dataclasses.replace(job, out=out, model=model)


def shippable(reference: Reference) -> Reference:
    """A reference record with what segmenting needs (class, prompt, memory entry on the CPU), not
    its full-size mask and logits."""
    memory = reference.memory.to("cpu") if hasattr(reference.memory, "to") else reference.memory
    empty = np.zeros((0, 0), np.float32)
    return dataclasses.replace(reference, memory=memory, logits=empty, mask=empty.astype(bool))


def _pool_size(ray: Any, options: RayOptions) -> int:
    if options.actors is not None:
        return options.actors
    resources = ray.cluster_resources()
    if options.gpus_per_actor > 0:
        return max(1, int(resources.get("GPU", 0) // options.gpus_per_actor))
    return max(1, int(resources.get("CPU", 1)))


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise SansaError("--ray: Ray is not installed: pip install 'sansa-segment[scale]'") from None
    return ray


def _cause(err: BaseException) -> str:
    """The user-facing line of a Ray error: its innermost cause's first line."""
    while (cause := getattr(err, "cause", None)) is not None and cause is not err:
        err = cause
    return f"{type(err).__name__}: {_first_line(err)}"


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
