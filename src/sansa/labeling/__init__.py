"""Labelling runs as a library: label a whole folder (or a million images) from a few references.

``sansa segment`` is argument parsing plus :func:`run`; the web app's export writes through the
same writer and dataset assembly (:func:`export_results`); a distributed runner (Ray) calls the
steps one by one (see :mod:`sansa.labeling.engine`)::

    from sansa.labeling import ExportOptions, Job, ModelSpec, ReferenceEntry, run
    from sansa.records import Prompt

    job = Job(references=[ReferenceEntry("ref.jpg", "dog", Prompt.create(box=[40, 60, 300, 280]))],
              targets=["photos/"], out="labels/", export=ExportOptions(formats=("coco", "png")),
              model=ModelSpec(model="sansa-universal"))
    result = run(job)            # resumable: run it again after a kill, it finishes the rest
    print(result.outcome.written, result.outcome.failures)

The output folder is owned by one run at a time (a lock), and remembers what its results were
made from: a resumed run redoes targets whose file changed and refuses other references or
another model (``Job(overwrite=True)`` starts over).
"""

from sansa.labeling.batches import Batch, fixed_batches
from sansa.labeling.engine import (
    LoadedReference,
    RunResult,
    Segmented,
    encode_references,
    export_results,
    finalise,
    finish_dataset,
    load_references,
    prepare,
    process_batch,
    save_reference_pictures,
    writer_for,
)
from sansa.labeling.folder import FolderLock, clear_results
from sansa.labeling.job import ExportOptions, Job, ModelSpec, ReferenceEntry, prompt_from_dict, prompt_to_dict
from sansa.labeling.pipeline import Outcome, RunOutcome
from sansa.labeling.plan import Plan
from sansa.labeling.run import run
from sansa.targets import Target, find_targets, fingerprint

__all__ = [
    "Batch",
    "ExportOptions",
    "FolderLock",
    "Job",
    "LoadedReference",
    "ModelSpec",
    "Outcome",
    "RunOutcome",
    "Plan",
    "ReferenceEntry",
    "RunResult",
    "Segmented",
    "Target",
    "clear_results",
    "encode_references",
    "export_results",
    "finalise",
    "find_targets",
    "fingerprint",
    "finish_dataset",
    "fixed_batches",
    "load_references",
    "prepare",
    "process_batch",
    "prompt_from_dict",
    "prompt_to_dict",
    "run",
    "save_reference_pictures",
    "writer_for",
]
