"""The whole labelling run: prepare, encode the references, segment every batch (on this process or
on Ray), finalise the dataset files and ``run.json``. See :mod:`sansa.labeling` for the guarantees
(resume, fixed batches, atomic outputs).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from sansa.errors import SansaError
from sansa.labeling.engine import (
    Notes,
    RunResult,
    encode_references,
    finalise,
    output_errors,
    prepare,
    process_batch,
    save_reference_pictures,
    tally,
)
from sansa.labeling.job import Job
from sansa.labeling.pipeline import Outcome, RunOutcome, lane_batches, model_lanes
from sansa.labeling.plan import Plan
from sansa.labeling.ray import run_ray

if TYPE_CHECKING:
    from sansa.predictor import SansaPredictor


def run(
    job: Job,
    executor: str = "local",
    notes: Notes | None = None,
    command: str = "",
    pipelined: bool = True,
    lanes: int | None = None,
    **executor_options: Any,
) -> RunResult:
    """Run a labelling job to the end (a re-run resumes; see the module docstring).

    Args:
        executor: ``"local"`` (this process) or ``"ray"`` (a Ray cluster; ``executor_options`` go to it).
        notes: receives one-line remarks for the user (default: printed to stderr).
        command: how the run was started, shown to a second run refused by the folder lock.
        pipelined: read targets ahead of the model and write outputs behind it on threads
            (:mod:`sansa.labeling.pipeline`; same bytes); ``False``: one batch after the other.
        lanes: batches segmented at once on this process (default: one per core on the CPU, where
            each model call runs at a fixed thread count; 1 on a GPU). Same bytes at any count.
    """
    if executor == "ray":
        with output_errors(job.out_dir):
            return run_ray(job, notes=notes, command=command, **executor_options)
    if executor != "local":
        raise SansaError(f"executor: unknown executor {executor!r} (known: local, ray)")
    job.model.check()
    with output_errors(job.out_dir):
        plan = prepare(job, notes, command)
        try:
            predictor = job.load_predictor()
            references = encode_references(predictor, plan)
            reference_files = save_reference_pictures(plan, references)
            outcome = _local_batches(predictor, plan, pipelined, lanes or model_lanes(predictor))
            return finalise(
                plan, outcome, references, reference_files, str(predictor.device), precision=predictor.precision
            )
        finally:
            plan.close()


def _local_batches(predictor: SansaPredictor, plan: Plan, pipelined: bool, lanes: int) -> RunOutcome:
    """Every batch of the plan on this process, with a progress bar; ``seconds`` is the loop's wall time."""
    if pipelined:
        outcomes = lane_batches(predictor, plan.writer, plan.stream(), plan.inputs_digest, lanes)
    else:
        outcomes = (process_batch(predictor, plan.writer, b, plan.inputs_digest) for b in plan.stream())
    return tally(_compacting(outcomes, plan), plan)


def _compacting(outcomes: Iterable[Outcome], plan: Plan) -> Iterator[Outcome]:
    """``outcomes``, the records written so far moved into a shard whenever there are enough
    (:meth:`~sansa.export.FolderWriter.compact`): a killed run leaves few records to read one by one."""
    for outcome in outcomes:
        plan.writer.compact()
        yield outcome
