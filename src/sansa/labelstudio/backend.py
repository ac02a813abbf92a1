"""``SansaBackend``: the state behind Label Studio's ML backend protocol.

Per Label Studio project it keeps the submitted annotations (the references) and one
:class:`~sansa.predictor.SansaPredictor` (sharing the model) holding their encodings::

    backend = SansaBackend(predictor.model, LabelStudio(url, token))
    version = backend.setup("3.1700000000", label_config, hostname, token)   # Label Studio's /setup
    answers = backend.predict(tasks, "3.1700000000", label_config)           # Label Studio's /predict
    backend.webhook({"action": "ANNOTATION_UPDATED", ...})                    # Label Studio's /webhook

``predict`` answers one list per task: ``[prediction]``, or ``[]`` when the task failed (its
image is missing, ...) or is not done within ``answer_within`` seconds; Label Studio stores
nothing for ``[]``. Tasks not done in time are finished by a worker thread and posted through
Label Studio's API (:mod:`~sansa.labelstudio.jobs`). A ``context`` with clicks or a box (Label
Studio's interactive mode) is answered at once from :mod:`~sansa.labelstudio.interactive`.

Locks: ``_state`` guards the projects' annotations and jobs and is held only briefly (never
during HTTP or model calls), so ``/setup``, ``/webhook`` and ``/health`` never wait behind
predictions; ``_model`` serialises the model (encodings and predictions).

References are encoded when a prediction first needs them and again only when their
annotation changes (its results or image), so a webhook costs one task fetch and the next
prediction one encoding per changed annotation. ``model_version`` is a hash of the references
(annotation ids and contents) and the model: it changes exactly when the references do, and
Label Studio then asks again for every task.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from sansa.errors import SansaError
from sansa.labelstudio import interactive
from sansa.labelstudio.config import LabelConfig, parse_config
from sansa.labelstudio.jobs import Job, Outcome
from sansa.labelstudio.remote import LabelStudio
from sansa.labelstudio.results import annotation_prompts, segmentation_results
from sansa.model.sansa import SansaModel
from sansa.predictor import SansaPredictor
from sansa.records import ObjectOptions, Reference

T = TypeVar("T")

log: logging.Logger = logging.getLogger("sansa.labelstudio")

ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
DELETE_EVENTS = ("ANNOTATIONS_DELETED",)
RESYNC_EVENTS = ("START_TRAINING",)
VERSION_PREFIX = "sansa-"
#: seconds ``/predict`` waits for its tasks by default (Label Studio's own wait is 100 s)
ANSWER_WITHIN_S = 60.0


@dataclass(frozen=True)
class BackendOptions:
    """What the backend predicts and how long Label Studio is kept waiting.

    Attributes:
        answer_within: seconds a ``/predict`` call waits for its tasks (keep it below Label
            Studio's ``ML_TIMEOUT_PREDICT``); the rest are posted through the API when done.
        objects: how each class is split into objects (:class:`~sansa.records.ObjectOptions`:
            ``min_area``, ``max_objects``, ``points_per_class``, ``overlap``, ...), the same
            options as ``sansa segment``'s; objects under ``min_area`` get no region, and at
            most ``max_objects`` regions per class and task are written.
        skip_annotated: tasks that already have an annotation get no prediction.
        delete_old: delete a task's predictions of older sansa model versions when it gets a new one.
    """

    answer_within: float = ANSWER_WITHIN_S
    objects: ObjectOptions = field(default_factory=ObjectOptions)
    skip_annotated: bool = False
    delete_old: bool = False

    def __post_init__(self) -> None:
        if not self.answer_within > 0:
            raise SansaError(f"answer_within: must be more than 0 seconds, got {self.answer_within}")


@dataclass(frozen=True)
class AnnotationRecord:
    """A submitted annotation as a reference source: its task, image value, results and a digest."""

    id: int
    task: int
    image: str
    results: list[dict[str, Any]]
    digest: str


@dataclass
class Project:
    """One Label Studio project: its config, annotations and encoded references."""

    id: int
    predictor: SansaPredictor
    config: LabelConfig | None = None
    annotations: dict[int, AnnotationRecord] = field(default_factory=dict)
    encoded: dict[int, tuple[str, list[Reference]]] = field(default_factory=dict)
    synced: bool = False


class SansaBackend:
    """Few-shot predictions for Label Studio projects from their own annotations.

    Args:
        model: the SANSA model (shared by every project's predictor), or a loaded predictor whose
            model, device and precision every project's predictor shares.
        label_studio: where annotations and images are read and late predictions posted.
        device: where to run a given model (as for :class:`SansaPredictor`).
        model_name: names the model in ``model_version`` (a different model, a different version).
        options: see :class:`BackendOptions`.
    """

    def __init__(
        self,
        model: SansaModel | SansaPredictor,
        label_studio: LabelStudio | None = None,
        device: str | None = "auto",
        model_name: str = "sansa",
        options: BackendOptions | None = None,
    ) -> None:
        self.prototype: SansaPredictor = (
            model if isinstance(model, SansaPredictor) else SansaPredictor(model, device=device)
        )
        self.model_name: str = model_name
        self.label_studio: LabelStudio = label_studio or LabelStudio()
        self.options: BackendOptions = options or BackendOptions()
        self.projects: dict[int, Project] = {}
        self.jobs: dict[int, Job] = {}
        self._state = threading.Condition(threading.RLock())
        self._model = threading.Lock()
        self._worker: threading.Thread | None = None

    # -- protocol -------------------------------------------------------------------------
    def setup(
        self,
        project: str | int,
        schema: str | None = None,
        hostname: str | None = None,
        access_token: str | None = None,
    ) -> str:
        """Label Studio's ``/setup``: learn the project's config (and the token, if none was given),
        check the token opens the project, read its annotations the first time. Returns ``model_version``.

        Raises :class:`~sansa.errors.RemoteError` when Label Studio refuses the token or cannot be
        reached, so Label Studio shows the connection as failed, with the reason.
        """
        self.label_studio.learn(hostname, access_token)
        config = parse_config(schema) if schema else None
        with self._state:
            state = self._project(project)
            if config is not None:
                state.config = config
        self.label_studio.check(state.id)
        self._sync_once(state)
        with self._state:
            return self.model_version(state)

    def predict(
        self,
        tasks: list[dict[str, Any]],
        project: str | int,
        label_config: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> list[list[dict[str, Any]]] | list[dict[str, Any]]:
        """Label Studio's ``/predict``: per task, in order, ``[prediction]`` or ``[]`` (none).

        The tasks' own annotations (Label Studio sends them along) update the references first.
        A ``context`` holding clicks or a box (interactive mode) is answered for its one task as
        ``[prediction]`` (Label Studio reads the first result as the task's).
        """
        task_ids = [_task_id(task) for task in tasks]
        config = parse_config(label_config) if label_config else None
        with self._state:
            state = self._project(project)
            if config is not None:
                state.config = config
            if state.config is None:
                raise SansaError(f"project {state.id}: no labelling config (call /setup first)")
        self._sync_once(state)
        with self._state:
            for task in tasks:
                self._take_task(state, task)
            version = self.model_version(state)
            if not state.annotations:
                log.warning(
                    "project %s: %d tasks get no prediction: the project has no submitted annotation yet "
                    "(annotate a few tasks: they are the references)",
                    state.id,
                    len(tasks),
                )
                none: list[list[dict[str, Any]]] = [[] for _ in tasks]
                return none
        if context and interactive.has_prompt(context):
            if len(tasks) != 1:
                raise SansaError(f"context: interactive mode predicts one task, got {len(tasks)}")
            return self._interactive(state, tasks[0], context, version)
        return self._queued(state, tasks, task_ids, version)

    def webhook(self, payload: dict[str, Any], trusted: bool = False) -> dict[str, Any]:
        """Label Studio's ``/webhook``: annotation events update the references.

        The event only says which task changed; the task is read back from Label Studio when
        it can be (so an unauthenticated call can do no more than trigger that read). Without
        an API connection, only a ``trusted`` (authenticated) payload is used as sent.
        """
        action = payload.get("action")
        project_id = _project_id(payload.get("project"))
        with self._state:
            state = self.projects.get(project_id) if project_id is not None else None
        if state is None:
            return {"status": "ignored", "reason": "unknown project"}
        if action in ANNOTATION_EVENTS:
            self._on_annotation(state, payload, trusted)
        elif action in DELETE_EVENTS:
            self._on_delete(state, payload, trusted)
        elif action in RESYNC_EVENTS and self.label_studio.connected:
            self._resync(state)
        else:
            return {"status": "ignored", "reason": f"action {action!r}"}
        with self._state:
            return {"status": "ok", "model_version": self.model_version(state)}

    def model_version(self, state: Project | str | int) -> str:
        """``sansa-<hash>`` of the model name and the project's annotations (ids and digests)."""
        with self._state:
            if not isinstance(state, Project):
                state = self._project(state)
            items = [self.model_name] + [f"{i}:{a.digest}" for i, a in sorted(state.annotations.items())]
        return VERSION_PREFIX + hashlib.sha256("\n".join(items).encode()).hexdigest()[:12]

    def failures(self, project: str | int) -> dict[int, str]:
        """Task id -> why it has no prediction of the current version (for ``/failures`` and logs)."""
        with self._state:
            state = self._project(project)
            job = self.jobs.get(state.id)
            return dict(job.failures) if job is not None and job.version == self.model_version(state) else {}

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job has queued or running tasks (tests, shutdown); returns whether it is idle."""
        deadline = time.monotonic() + timeout
        with self._state:
            while any(job.pending or job.running is not None for job in self.jobs.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._state.wait(left)
            return True

    # -- references -----------------------------------------------------------------------
    def _project(self, project: str | int) -> Project:
        project_id = _project_id(project)
        if project_id is None:
            raise SansaError(f"project: expected a Label Studio project id, got {project!r}")
        if project_id not in self.projects:
            self.projects[project_id] = Project(project_id, self.prototype.sibling())
        return self.projects[project_id]

    def _sync_once(self, state: Project) -> None:
        """Read the project's annotations the first time (later, webhooks and tasks keep them current)."""
        if state.synced or not self.label_studio.connected:
            return
        try:
            self._resync(state)
        except SansaError as err:  # still usable: predictions read the annotations sent with the tasks
            log.warning("project %s: cannot read its annotations from Label Studio: %s", state.id, err)

    def _resync(self, state: Project) -> None:
        """Replace the project's annotations by those Label Studio has now."""
        tasks = self.label_studio.annotated_tasks(state.id)
        with self._state:
            state.annotations.clear()
            for task in tasks:
                self._take_task(state, task)
            state.synced = True

    def _take_task(self, state: Project, task: dict[str, Any]) -> None:
        """Make the task's submitted annotations the references of that task (replacing the old ones)."""
        task_id = _as_id(task.get("id")) if isinstance(task, dict) else None
        if state.config is None or task_id is None:
            return
        for annotation_id in [i for i, a in state.annotations.items() if a.task == task_id]:
            del state.annotations[annotation_id]
        data = _json_field(task, "data", dict)
        for annotation in _json_field(task, "annotations", list):
            record = _record(annotation, task_id, data.get(state.config.image_key))
            if record is not None:
                state.annotations[record.id] = record

    def _on_annotation(self, state: Project, payload: dict[str, Any], trusted: bool) -> None:
        task, annotation = _json_field(payload, "task", dict), _json_field(payload, "annotation", dict)
        task_id = _as_id(task.get("id", annotation.get("task")))
        if task_id is None:
            return
        if self.label_studio.connected:
            fresh = self.label_studio.task(task_id)
            with self._state:
                self._take_task(state, fresh)
        elif trusted and state.config is not None:
            image = (task.get("data") or {}).get(state.config.image_key)
            record = _record(annotation, task_id, image)
            if record is not None:
                with self._state:
                    state.annotations[record.id] = record

    def _on_delete(self, state: Project, payload: dict[str, Any], trusted: bool) -> None:
        listed = _json_field(payload, "annotations", list)
        gone = {i for a in listed if isinstance(a, dict) and (i := _as_id(a.get("id"))) is not None}
        with self._state:
            tasks = {state.annotations[i].task for i in gone if i in state.annotations}
        if self.label_studio.connected:
            for task_id in tasks:
                try:
                    fresh = self.label_studio.task(task_id)
                except SansaError:  # the task itself was deleted
                    fresh = {"id": task_id, "annotations": []}
                with self._state:
                    self._take_task(state, fresh)
        elif trusted:
            with self._state:
                for annotation_id in gone:
                    state.annotations.pop(annotation_id, None)

    def _encode(self, state: Project, annotations: dict[int, AnnotationRecord]) -> None:
        """Bring the predictor's references in line with ``annotations``: drop stale, encode new.

        Called with the model lock held (the predictor is only touched there)."""
        predictor = state.predictor
        for annotation_id, (digest, references) in list(state.encoded.items()):
            record = annotations.get(annotation_id)
            if record is None or record.digest != digest:
                for reference in references:
                    index = next(i for i, r in enumerate(predictor.references) if r is reference)
                    predictor.remove_reference(index)
                del state.encoded[annotation_id]
        for annotation_id, record in sorted(annotations.items()):
            if annotation_id in state.encoded:
                continue
            try:
                references = self._references_of(state, record)
            except SansaError as err:
                log.warning("annotation %s of task %s left out: %s", annotation_id, record.task, err)
                references = []
            state.encoded[annotation_id] = (record.digest, references)

    def _references_of(self, state: Project, record: AnnotationRecord) -> list[Reference]:
        if state.config is None:  # no labelling config yet: nothing reads the annotation
            return []
        image = self.label_studio.image(record.image, record.task)
        height, width = image.shape[:2]
        references = []
        for item in annotation_prompts(record.results, state.config, height, width):
            references.append(
                state.predictor.add_reference(image, prompt=item.prompt, label=item.label, name=f"task {record.task}")
            )
        return references

    # -- predictions ----------------------------------------------------------------------
    def _queued(
        self, state: Project, tasks: list[dict[str, Any]], task_ids: list[int], version: str
    ) -> list[list[dict[str, Any]]]:
        """Queue the tasks in the project's job and answer what is done within ``answer_within``."""
        deadline = time.monotonic() + self.options.answer_within
        with self._state:
            job = self._job(state, version)
            queued = [
                (task_id, task)
                for task_id, task in zip(task_ids, tasks, strict=True)
                if not (self.options.skip_annotated and _annotated(task))
            ]
            job.queue(queued)
            wanted = [task_id for task_id, _ in queued]
            self._start_worker()
            self._state.notify_all()
            while not all(job.finished(i) for i in wanted) and not job.cancelled:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._state.wait(left)
            answers = [job.take(i) if i in wanted else [] for i in task_ids]
            failed = {i: job.failures[i] for i in wanted if i in job.failures}
            late = sum(1 for i in wanted if i in job.deliver)
        if failed:
            named = "; ".join(f"task {i}: {cause}" for i, cause in sorted(failed.items())[:10])
            log.warning("project %s: %d tasks without a prediction (%s)", state.id, len(failed), named)
        if late:
            log.info(
                "project %s: answered %d of %d tasks within %.0f s; %d more are posted to Label Studio when done",
                state.id,
                sum(1 for a in answers if a),
                len(tasks),
                self.options.answer_within,
                late,
            )
        return answers

    def _job(self, state: Project, version: str) -> Job:
        """The project's job at ``version``; an older one is cancelled (its queue dropped)."""
        job = self.jobs.get(state.id)
        if job is not None and job.version == version:
            return job
        if job is not None:
            dropped = job.cancel()
            if dropped:
                log.info(
                    "project %s: %d queued tasks of %s cancelled (references changed)", state.id, dropped, job.version
                )
        job = self.jobs[state.id] = Job(state.id, version)
        return job

    def _start_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="sansa-labelstudio-worker", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        """The worker: predicts queued tasks one at a time, posting those already answered without."""
        while True:
            with self._state:
                waiting = [j for j in self.jobs.values() if j.pending and not j.cancelled]
                job = max(waiting, key=lambda j: j.called, default=None)  # the newest call first
                if job is None:
                    self._state.wait(30.0)
                    continue
                state = self.projects[job.project]
                if self.model_version(state) != job.version:
                    self._job(state, self.model_version(state))
                    self._state.notify_all()
                    continue
                task_id = job.running = job.pending.popleft()
                task, annotations, config = job.tasks[task_id], dict(state.annotations), state.config
            outcome = self._compute(state, annotations, config, task, job.version)
            with self._state:
                if self.model_version(state) != job.version:  # the references changed meanwhile
                    job.cancel()
                post = job.record(task_id, outcome)
                self._state.notify_all()
            if post and outcome.prediction is not None:
                self._post(job, task_id, outcome.prediction)
            if outcome.error is None and self.options.delete_old and self.label_studio.connected:
                self._delete_old(task_id, job.version)
            job.report(force=not job.pending)

    def _compute(
        self,
        state: Project,
        annotations: dict[int, AnnotationRecord],
        config: LabelConfig | None,
        task: dict[str, Any],
        version: str,
    ) -> Outcome:
        """One task's prediction from the references of ``annotations``, or why there is none."""
        task_id = task.get("id")
        try:
            config = _known(config)
            image = self._task_image(task, config)
            with self._model:
                self._encode(state, annotations)
                if not state.predictor.references:
                    return Outcome(error="no reference could be read (see the log)")
                segmentation = state.predictor.segment(image, name=f"task {task_id}", objects=self.options.objects)
        except SansaError as err:
            log.warning("task %s: no prediction: %s", task_id, err)
            return Outcome(error=str(err))
        except Exception as err:  # a bug must not stop the worker; the task stays without prediction
            log.exception("task %s: no prediction", task_id)
            return Outcome(error=f"internal error ({type(err).__name__}: {err})")
        results, score = segmentation_results(segmentation, config, self.options.objects)
        return Outcome(prediction={"result": results, "score": score, "model_version": version})

    def _post(self, job: Job, task_id: int, prediction: dict[str, Any]) -> None:
        try:
            self.label_studio.post_prediction(task_id, prediction)
        except SansaError as err:
            with self._state:
                job.failures[task_id] = f"cannot be stored in Label Studio: {err}"
            log.warning("task %s: prediction not stored in Label Studio: %s", task_id, err)

    def _delete_old(self, task_id: int, version: str) -> None:
        """Delete the task's predictions of other sansa model versions."""
        try:
            for prediction in self.label_studio.predictions(task_id):
                old = str(prediction.get("model_version") or "")
                if old.startswith(VERSION_PREFIX) and old != version and _as_id(prediction.get("id")) is not None:
                    self.label_studio.delete_prediction(prediction["id"])
        except SansaError as err:
            log.warning("task %s: older predictions not deleted: %s", task_id, err)

    def _task_image(self, task: dict[str, Any], config: LabelConfig) -> np.ndarray:
        """The task's image: its data's ``config.image_key`` entry, read from Label Studio."""
        source = _json_field(task, "data", dict).get(config.image_key)
        if not isinstance(source, str):
            raise SansaError(f"no image under {config.image_key!r} in the task's data")
        return self.label_studio.image(source, _as_id(task.get("id")))

    def _interactive(
        self, state: Project, task: dict[str, Any], context: dict[str, Any], version: str
    ) -> list[dict[str, Any]]:
        """The clicked object and its class everywhere in the task's image (interactive mode)."""
        with self._state:
            annotations, config = dict(state.annotations), _known(state.config)
        image = self._task_image(task, config)
        with self._model:
            self._encode(state, annotations)
            results, score = interactive.clicked_results(state.predictor, image, context, config, self.options)
        return [{"result": results, "score": score, "model_version": version}]


def _known(config: LabelConfig | None) -> LabelConfig:
    if config is None:
        raise SansaError("the project's labelling config is not known yet")
    return config


def _json_field(values: dict[str, Any], key: str, kind: type[T]) -> T:
    """``values[key]`` when it is a ``kind`` (a JSON object or array), else an empty one."""
    value = values.get(key)
    return value if isinstance(value, kind) else kind()


def _record(annotation: dict[str, Any], task_id: int, image: str | None) -> AnnotationRecord | None:
    """The annotation as a reference source, or ``None`` when it cannot be one (skipped, empty)."""
    if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
        return None
    annotation_id = _as_id(annotation.get("id"))
    results = annotation.get("result") or []
    if annotation_id is None or not isinstance(results, list) or not results or not isinstance(image, str):
        return None
    results = [r for r in results if isinstance(r, dict)]
    digest = hashlib.sha256(json.dumps([image, results], sort_keys=True).encode()).hexdigest()[:16]
    return AnnotationRecord(annotation_id, task_id, image, results, digest)


def _as_id(value) -> int | None:
    """A Label Studio id (a non-negative int, or its digits), else ``None``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _project_id(project) -> int | None:
    """Label Studio's project id from ``"12.1700000000"`` (``/setup``, ``/predict``), ``12`` or ``{"id": 12}``."""
    if isinstance(project, dict):
        project = project.get("id")
    if isinstance(project, bool):
        return None
    if isinstance(project, int):
        return project
    if isinstance(project, str):
        head = project.split(".", 1)[0]
        return int(head) if head.isdigit() else None
    return None


def _task_id(task) -> int:
    """A task's id, or a one-line :class:`SansaError` (a ``/predict`` caller's mistake: 400)."""
    if not isinstance(task, dict):
        raise SansaError(f"tasks: expected task objects, got {type(task).__name__}")
    task_id = _as_id(task.get("id"))
    if task_id is None:
        raise SansaError(f"tasks: a task id must be a non-negative integer, got {task.get('id')!r}")
    if "data" in task and not isinstance(task["data"], dict):
        raise SansaError(f"task {task_id}: data must be an object, got {type(task['data']).__name__}")
    annotations = task.get("annotations")
    if annotations is not None and not isinstance(annotations, list):
        raise SansaError(f"task {task_id}: annotations must be a list")
    for annotation in annotations or []:
        if not isinstance(annotation, dict) or _as_id(annotation.get("id")) is None:
            given = annotation.get("id") if isinstance(annotation, dict) else annotation
            raise SansaError(f"task {task_id}: an annotation id must be a non-negative integer, got {given!r}")
    return task_id


def _annotated(task: dict[str, Any]) -> bool:
    """Whether the task has an annotation that was not skipped."""
    return any(isinstance(a, dict) and not a.get("was_cancelled") for a in task.get("annotations") or [])
