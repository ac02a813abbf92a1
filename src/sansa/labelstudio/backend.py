"""``SansaBackend``: the state behind Label Studio's ML backend protocol.

Per Label Studio project it keeps the submitted annotations (the references) and one
:class:`~sansa.predictor.SansaPredictor` (sharing the model) holding their encodings::

    backend = SansaBackend(predictor.model, LabelStudio(url, token))
    version = backend.setup("3.1700000000", label_config, hostname, token)   # Label Studio's /setup
    predictions = backend.predict(tasks, "3.1700000000", label_config)       # Label Studio's /predict
    backend.webhook({"action": "ANNOTATION_UPDATED", ...})                    # Label Studio's /webhook

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
from dataclasses import dataclass, field

from sansa.errors import SansaError
from sansa.labelstudio.config import LabelConfig, parse_config
from sansa.labelstudio.remote import LabelStudio
from sansa.labelstudio.results import annotation_prompts, mask_results
from sansa.model.sansa import SansaModel
from sansa.predictor import SansaPredictor
from sansa.records import Reference

log = logging.getLogger("sansa.labelstudio")

ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
DELETE_EVENTS = ("ANNOTATIONS_DELETED",)
RESYNC_EVENTS = ("START_TRAINING",)


@dataclass(frozen=True)
class AnnotationRecord:
    """A submitted annotation as a reference source: its task, image value, results and a digest."""

    id: int
    task: int
    image: str
    results: list[dict]
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
        label_studio: where annotations and images are read.
        device: where to run a given model (as for :class:`SansaPredictor`).
        model_name: names the model in ``model_version`` (a different model, a different version).
    """

    def __init__(
        self,
        model: SansaModel | SansaPredictor,
        label_studio: LabelStudio | None = None,
        device: str | None = "auto",
        model_name: str = "sansa",
    ) -> None:
        self.prototype = model if isinstance(model, SansaPredictor) else SansaPredictor(model, device=device)
        self.model_name = model_name
        self.label_studio = label_studio or LabelStudio()
        self.projects: dict[int, Project] = {}
        self._lock = threading.RLock()

    # -- protocol -------------------------------------------------------------------------
    def setup(
        self,
        project: str | int,
        schema: str | None = None,
        hostname: str | None = None,
        access_token: str | None = None,
    ) -> str:
        """Label Studio's ``/setup``: learn the project's config (and Label Studio's address and
        token); read the project's annotations the first time. Returns ``model_version``."""
        self.label_studio.learn(hostname, access_token)
        with self._lock:
            state = self._project(project)
            if schema:
                state.config = parse_config(schema)
            self._sync_once(state)
            return self.model_version(state)

    def predict(self, tasks: list[dict], project: str | int, label_config: str | None = None) -> list[dict]:
        """Label Studio's ``/predict``: one prediction per task, in order (empty when nothing is known).

        The tasks' own annotations (Label Studio sends them along) update the references first.
        """
        with self._lock:
            state = self._project(project)
            if label_config:
                state.config = parse_config(label_config)
            if state.config is None:
                raise SansaError(f"project {state.id}: no labelling config (call /setup first)")
            self._sync_once(state)
            for task in tasks:
                self._take_task(state, task)
            self._encode(state)
            if not state.predictor.references:
                return []
            version = self.model_version(state)
            return [self._predict_task(state, task, version) for task in tasks]

    def webhook(self, payload: dict, trusted: bool = False) -> dict:
        """Label Studio's ``/webhook``: annotation events update the references.

        The event only says which task changed; the task is read back from Label Studio when
        it can be (so an unauthenticated call can do no more than trigger that read). Without
        an API connection, only a ``trusted`` (authenticated) payload is used as sent.
        """
        action = payload.get("action")
        project_id = _project_id(payload.get("project"))
        with self._lock:
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
            return {"status": "ok", "model_version": self.model_version(state)}

    def model_version(self, state: Project | str | int) -> str:
        """``sansa-<hash>`` of the model name and the project's annotations (ids and digests)."""
        if not isinstance(state, Project):
            state = self._project(state)
        items = [self.model_name] + [f"{i}:{a.digest}" for i, a in sorted(state.annotations.items())]
        return "sansa-" + hashlib.sha256("\n".join(items).encode()).hexdigest()[:12]

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
        state.annotations.clear()
        for task in tasks:
            self._take_task(state, task)
        state.synced = True

    def _take_task(self, state: Project, task: dict) -> None:
        """Make the task's submitted annotations the references of that task (replacing the old ones)."""
        if state.config is None or "id" not in task:
            return
        task_id = int(task["id"])
        for annotation_id in [i for i, a in state.annotations.items() if a.task == task_id]:
            del state.annotations[annotation_id]
        image = (task.get("data") or {}).get(state.config.image_key)
        for annotation in task.get("annotations") or []:
            record = _record(annotation, task_id, image)
            if record is not None:
                state.annotations[record.id] = record

    def _on_annotation(self, state: Project, payload: dict, trusted: bool) -> None:
        task = payload.get("task") if isinstance(payload.get("task"), dict) else {}
        annotation = payload.get("annotation") if isinstance(payload.get("annotation"), dict) else {}
        task_id = _as_id(task.get("id", annotation.get("task")))
        if task_id is None:
            return
        if self.label_studio.connected:
            self._take_task(state, self.label_studio.task(task_id))
        elif trusted and state.config is not None:
            image = (task.get("data") or {}).get(state.config.image_key)
            record = _record(annotation, task_id, image)
            if record is not None:
                state.annotations[record.id] = record

    def _on_delete(self, state: Project, payload: dict, trusted: bool) -> None:
        listed = payload.get("annotations") if isinstance(payload.get("annotations"), list) else []
        gone = {_as_id(a.get("id")) for a in listed if isinstance(a, dict)} - {None}
        tasks = {state.annotations[i].task for i in gone if i in state.annotations}
        if self.label_studio.connected:
            for task_id in tasks:
                try:
                    self._take_task(state, self.label_studio.task(task_id))
                except SansaError:  # the task itself was deleted
                    self._take_task(state, {"id": task_id, "annotations": []})
        elif trusted:
            for annotation_id in gone:
                state.annotations.pop(annotation_id, None)

    def _encode(self, state: Project) -> None:
        """Bring the predictor's references in line with the annotations: drop stale, encode new."""
        predictor = state.predictor
        for annotation_id, (digest, references) in list(state.encoded.items()):
            record = state.annotations.get(annotation_id)
            if record is None or record.digest != digest:
                for reference in references:
                    index = next(i for i, r in enumerate(predictor.references) if r is reference)
                    predictor.remove_reference(index)
                del state.encoded[annotation_id]
        for annotation_id, record in sorted(state.annotations.items()):
            if annotation_id in state.encoded:
                continue
            try:
                references = self._references_of(state, record)
            except SansaError as err:
                log.warning("annotation %s of task %s left out: %s", annotation_id, record.task, err)
                references = []
            state.encoded[annotation_id] = (record.digest, references)

    def _references_of(self, state: Project, record: AnnotationRecord) -> list[Reference]:
        image = self.label_studio.image(record.image)
        height, width = image.shape[:2]
        references = []
        for item in annotation_prompts(record.results, state.config, height, width):
            references.append(
                state.predictor.add_reference(image, prompt=item.prompt, label=item.label, name=f"task {record.task}")
            )
        return references

    # -- predictions ----------------------------------------------------------------------
    def _predict_task(self, state: Project, task: dict, version: str) -> dict:
        config = state.config
        try:
            image = self.label_studio.image((task.get("data") or {}).get(config.image_key))
            segmentation = state.predictor.segment(image, name=f"task {task.get('id')}")
        except SansaError as err:
            log.warning("task %s: no prediction: %s", task.get("id"), err)
            return {"result": [], "score": 0.0, "model_version": version}
        results, scores = [], []
        for label in segmentation.labels:
            if label not in config.labels:
                continue  # a class removed from the config since it was annotated
            score = segmentation.predictions[label].score
            found = mask_results(segmentation.mask(label), label, config.control_for(label), score)
            results += found
            scores += [score] if found else []
        score = sum(scores) / len(scores) if scores else 0.0
        return {"result": results, "score": round(score, 4), "model_version": version}


def _record(annotation: dict, task_id: int, image: str | None) -> AnnotationRecord | None:
    """The annotation as a reference source, or ``None`` when it cannot be one (skipped, empty)."""
    if not isinstance(annotation, dict) or "id" not in annotation or annotation.get("was_cancelled"):
        return None
    results = annotation.get("result") or []
    if not results or not image:
        return None
    digest = hashlib.sha256(json.dumps([image, results], sort_keys=True).encode()).hexdigest()[:16]
    return AnnotationRecord(int(annotation["id"]), task_id, image, results, digest)


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
