"""``SansaPredictor``: the stateful front of the model, holding reference memories.

Typical use::

    predictor = SansaPredictor.from_checkpoint("sam2_hiera_large.pt", "sansa_adapter.pth")
    predictor.add_reference("ref.jpg", mask="ref_mask.png")        # encoded once
    for path in targets:
        prediction = predictor.predict(path)                        # reuses the memory

References are kept in the order added; each has a class ``label``. Targets are never written to
memory, so every target is segmented independently of the others.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import glob
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sansa.devices import (
    AUTOCAST_PARTS,
    CPU_MODEL_THREADS,
    autocast,
    choose_precision,
    part_dtype,
    pinned_threads,
    resolve_device,
    resolve_precision,
)
from sansa.errors import SansaError
from sansa.hub import resolve_pretrained
from sansa.images import ImageLike, load_image
from sansa.model.build import DEFAULT_BACKBONE, build_sansa, resolve_backbone
from sansa.model.checkpoint import (
    infer_adapter_layout,
    load_adapter_weights,
    load_sam2_checkpoint,
    read_adapter_checkpoint,
)
from sansa.model.memory import MemoryTokens
from sansa.model.sansa import Decoded, ImageFeatures, SansaModel
from sansa.model.variants import VARIANTS
from sansa.objects import Decoder, ObjectOptions, find_objects
from sansa.records import (
    DEFAULT_LABEL,
    FailedTarget,
    Prediction,
    Prompt,
    Reference,
    Segmentation,
    resolve_label_map,
)
from sansa.targets import find_targets
from sansa.transforms import ModelTransform

logger: logging.Logger = logging.getLogger(__name__)

# Targets encoded together by segment_many (and `sansa segment`) on a GPU. On the CPU one at a
# time is faster: Hiera-T took 3.0 s per image alone and 4.2 s per image in batches of 4 here.
ACCELERATOR_BATCH_SIZE = 4
# Memory tokens x batch in one memory-attention call: 32 targets of a 1-shot class (4100 tokens),
# 6 of a 5-shot class. Bounds the [batch, 4096, tokens] attention matrices.
ATTENTION_BUDGET = 1 << 17


class SansaPredictor:
    """Segments targets from the references added so far.

    Args:
        model: a :class:`SansaModel` (weights loaded).
        device: ``"auto"`` or ``None`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
        precision: ``"fp32"`` or ``None`` (exact), ``"bf16"`` or ``"fp16"``: the image encoder and
            memory attention run under ``torch.autocast`` to that type (weights stay fp32; see
            :attr:`autocast_parts`). Refused where
            the device lacks native support (see :func:`sansa.devices.resolve_precision`).
            ``"auto"``: bf16 where the device computes it natively and fast (a CUDA GPU with bf16,
            a CPU with AMX), fp32 elsewhere. :attr:`precision` is what runs (``"auto"`` resolved).
        objects: how :meth:`segment` and the others split each class into objects (default:
            :class:`~sansa.objects.ObjectOptions`'s defaults); kept as :attr:`objects`.

    Attributes:
        autocast_parts: the model parts (of :data:`sansa.devices.MODEL_PARTS`) that run in
            :attr:`precision` when it is ``bf16``/``fp16`` (default
            :data:`sansa.devices.AUTOCAST_PARTS`: the image encoder and memory attention; the
            target's decoder, where bf16 cost up to 2.66 points of mask IoU, stays fp32: see
            ``benchmarks/bf16_iou.py``). References' prompt decoding and memory stay fp32.
        cpu_threads: intra-op threads of each model call on the CPU (default
            :data:`sansa.devices.CPU_MODEL_THREADS`: results independent of the machine's core
            count); ``None``: torch's current setting (faster single images on many cores, results
            that depend on the thread count).
    """

    def __init__(
        self,
        model: SansaModel,
        device: str | torch.device | None = "auto",
        precision: str | None = "fp32",
        objects: ObjectOptions | None = None,
    ) -> None:
        self.device: torch.device = resolve_device(device)
        self.precision: str = choose_precision(precision, self.device)  # what runs: "auto" resolved
        self._autocast_dtype = resolve_precision(self.precision, self.device)
        self.model: SansaModel = model.to(self.device).eval()
        self.transform: ModelTransform = ModelTransform(model.image_size)
        self.cpu_threads: int | None = CPU_MODEL_THREADS
        self.autocast_parts: frozenset[str] = frozenset(AUTOCAST_PARTS)
        self.objects: ObjectOptions = objects if objects is not None else ObjectOptions()
        self._references: list[Reference] = []
        self._memory: dict[str, MemoryTokens] = {}

    def __repr__(self) -> str:
        classes = ", ".join(f"{label!r}: {sum(r.label == label for r in self._references)}" for label in self.labels)
        objects = "" if self.objects == ObjectOptions() else f", objects={self.objects}"
        return (
            f"SansaPredictor(backbone={_backbone_name(self.model)}, adapters={list(self.model.adapter_stages)}, "
            f"device={self.device}, precision={self.precision}, references={len(self._references)}, "
            f"classes={{{classes}}}{objects})"
        )

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        sam2_checkpoint: str | os.PathLike[str] | None,
        adapter_checkpoint: str | os.PathLike[str] | None = None,
        model: str | os.PathLike[str] = DEFAULT_BACKBONE,
        device: str | torch.device | None = "auto",
        precision: str | None = "fp32",
    ) -> SansaPredictor:
        """Build from Meta's SAM2 release-1.0 checkpoint and a SANSA adapter file.

        ``from_checkpoint(None, model="test_tiny")`` is the tiny random-weight model (seeded, the
        same every time; the CLI's ``--backbone test_tiny --random-weights``): for trying the API
        and for tests, it needs no download.

        Args:
            sam2_checkpoint: e.g. ``sam2_hiera_large.pt``; ``None``: random weights.
            adapter_checkpoint: an authors' (or ``sansa train``) adapter file; its stages and
                channel factor are read off its tensor shapes. ``None`` gives plain SAM2.
            model: the backbone name (``hiera_tiny``, ``hiera_small``, ``hiera_base_plus``,
                ``hiera_large``, ``test_tiny``) or a ``sam2`` YAML config path.
            device: where to run.
            precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"`` (see the class).
        """

        if sam2_checkpoint is None:
            return cls(_random_model(model, adapter_checkpoint), device=device, precision=precision)
        return cls(_trained_model(sam2_checkpoint, adapter_checkpoint, model), device=device, precision=precision)

    @classmethod
    def from_pretrained(
        cls,
        name: str = "sansa-universal",
        device: str | torch.device | None = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        offline: bool | None = None,
        precision: str | None = "fp32",
    ) -> SansaPredictor:
        """A released SANSA model by name, downloaded once and cached (see ``sansa models``).

        Args:
            name: a registered model (``sansa-universal``, ``sansa-generalist``, ...).
            device: where to run.
            cache_dir: where adapter files are cached (default: beside the Hugging Face cache).
            offline: never download; use only cached files (default: ``HF_HUB_OFFLINE``).
            precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"`` (see the class).
        """

        files = resolve_pretrained(name, cache_dir=cache_dir, offline=offline)
        return cls.from_checkpoint(
            files.sam2_checkpoint, files.adapter_checkpoint, model=files.backbone, device=device, precision=precision
        )

    def sibling(self) -> SansaPredictor:
        """A predictor without references over the same model, device and precision (e.g. one per
        web session or Label Studio project)."""
        other = copy.copy(self)
        other._references, other._memory = [], {}
        return other

    # -- references ---------------------------------------------------------------------
    @property
    def references(self) -> list[Reference]:
        """The references, in the order added."""
        return list(self._references)

    @property
    def labels(self) -> list[str]:
        """The classes, in order of their first reference."""
        return list(dict.fromkeys(r.label for r in self._references))

    def add_reference(
        self,
        image: ImageLike,
        mask: Any = None,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
        scribble: Any = None,
        label: str = DEFAULT_LABEL,
        name: str | None = None,
        prompt: Prompt | None = None,
        features: ImageFeatures | None = None,
    ) -> Reference:
        """Encode a reference image and its prompt into memory (once).

        Args:
            image: a path, PIL image or ``uint8 [H, W, 3]`` array.
            mask: the object's pixels, ``[H, W]`` (array, PIL image or PNG path); or
            points: clicks ``[[x, y], ...]`` with ``labels`` (1 object, 0 not; default all 1);
            box: ``[x0, y0, x1, y1]``;
            scribble: points along a stroke ``[[x, y], ...]`` (or a list of strokes).
                Points, box and scribble can be combined; a mask cannot.
            label: the class this reference is an example of.
            name: a display name (defaults to the file name).
            prompt: instead of the five above, a ready :class:`~sansa.records.Prompt` record.
            features: the image's encoding (:meth:`encode` of this image), when the caller has it
                cached (an editor changing a reference's mask stroke by stroke): not encoded again.

        Returns:
            The :class:`Reference`, with the mask SANSA understood (``.mask``, ``.logits``).
        """
        if not isinstance(label, str) or not label.strip():
            raise SansaError("label: must be a non-empty class name")
        pixels = load_image(image, "image")
        given = {"mask": mask, "points": points, "labels": labels, "box": box, "scribble": scribble}
        if prompt is None:
            prompt = Prompt.create(**given)
        elif any(value is not None for value in given.values()):
            raise SansaError("prompt: give a Prompt record or mask/points/labels/box/scribble, not both")
        height, width = pixels.shape[:2]
        prompt.check_fits(height, width)
        with self._computing():
            feats = features if features is not None else self.encode([pixels])
            decoded = self._decode_reference(feats, prompt, height, width)
            entry = self.model.encode_memory(feats, decoded)
            logits = self.transform.logits_to_image(decoded.low_res_logits, height, width)[0]
        reference = Reference(
            label=label,
            prompt=prompt,
            logits=logits.cpu().numpy(),
            mask=prompt.mask.copy() if prompt.mask is not None else (logits > 0).cpu().numpy(),
            score=None if prompt.mask is not None else float(decoded.iou[0]),
            memory=entry,
            name=name or _name_of(image, f"reference {len(self._references)}"),
        )
        self._references.append(reference)
        self._memory.pop(label, None)
        return reference

    def add_encoded(self, reference: Reference) -> Reference:
        """Add a reference another predictor encoded (same model; e.g. shipped to a worker process),
        without encoding it again. Its ``memory`` is moved to this predictor's device."""
        if not isinstance(reference, Reference):
            raise SansaError(f"reference: expected a Reference record, got {type(reference).__name__}")
        memory = reference.memory.to(self.device) if hasattr(reference.memory, "to") else reference.memory
        reference = dataclasses.replace(reference, memory=memory)
        self._references.append(reference)
        self._memory.pop(reference.label, None)
        return reference

    def remove_reference(self, index: int) -> Reference:
        """Forget the reference at ``index`` (in the order added)."""
        if not 0 <= index < len(self._references):
            raise SansaError(f"reference index {index} out of range (0..{len(self._references) - 1})")
        reference = self._references.pop(index)
        self._memory.pop(reference.label, None)
        return reference

    def reset(self) -> None:
        """Forget every reference."""
        self._references.clear()
        self._memory.clear()

    # -- targets --------------------------------------------------------------------------
    def predict(self, target: ImageLike, label: str | None = None, keep_logits: bool = True) -> Prediction:
        """Segment one class in one target image.

        Args:
            target: a path, PIL image or ``uint8 [H, W, 3]`` array.
            label: the class; may be left out when all references share one class.
            keep_logits: keep ``.logits`` (``float32 [H, W]``); this one-class call keeps them by
                default, :meth:`segment` and the others do not.

        Returns:
            A :class:`Prediction` at the target's own size.
        """
        label = self._single_label(label)
        if label not in self.labels:  # before the costly encoding
            raise SansaError(f"label: no reference of class {label!r} (known: {', '.join(self.labels)})")
        pixels = load_image(target, "target")
        with self._computing():
            feats = self.encode([pixels])
            decoded = self.model.decode_targets(feats, self.memory(label), *self._head_dtypes())
            logits = self.transform.logits_to_image(decoded.low_res_logits, *pixels.shape[:2])[0]
        mask = (logits > 0).cpu().numpy()
        kept = logits.cpu().numpy() if keep_logits else None
        return Prediction(logits=kept, score=float(decoded.iou[0]), label=label, mask=mask)

    def segment(
        self,
        target: ImageLike,
        name: str | None = None,
        objects: ObjectOptions | bool = True,
        keep_logits: bool = False,
    ) -> Segmentation:
        """Segment every class in one target: the image is encoded once, each class decoded from
        it, and each class's objects found from the same encoding (see :meth:`segment_encoded`)."""
        names = [name] if name is not None else None
        return self.segment_batch([target], names, objects=objects, keep_logits=keep_logits)[0]

    def segment_batch(
        self,
        targets: Sequence[ImageLike],
        names: Sequence[str] | None = None,
        objects: ObjectOptions | bool = True,
        keep_logits: bool = False,
    ) -> list[Segmentation]:
        """Segment every class in several targets, encoding them as one batch.

        Args:
            targets: paths, PIL images or ``uint8 [H, W, 3]`` arrays (sizes may differ).
            names: display names (default: the paths, or ``target <i>``).
            objects, keep_logits: see :meth:`segment_encoded`.

        Returns:
            One :class:`Segmentation` per target, at that target's own size.
        """
        self._require_references()
        images = [load_image(t, "target") for t in targets]
        names = list(names) if names is not None else [_name_of(t, f"target {i}") for i, t in enumerate(targets)]
        sizes = [im.shape[:2] for im in images]
        return self.segment_encoded(self.encode(images), sizes, names, objects=objects, keep_logits=keep_logits)

    def encode(self, images: Sequence[np.ndarray]) -> ImageFeatures:
        """Run the image encoder on RGB ``uint8 [H, W, 3]`` images (for callers that cache encodings).

        Under ``bf16``/``fp16`` the image encoder (~90% of the FLOPs) runs under autocast and its
        features come back as fp32 (see :attr:`autocast_parts` for the other parts).
        """
        return self.encode_inputs(torch.stack([self.transform.image(image) for image in images]))

    def encode_inputs(self, inputs: torch.Tensor) -> ImageFeatures:
        """Run the image encoder on ``[B, 3, S, S]`` model inputs (:meth:`ModelTransform.image`
        of each image), with this predictor's precision; features come back fp32. Every encoding
        of a target goes through here (:meth:`encode`, the labelling loops, the web app)."""
        dtype = self._part_dtype("encoder")
        with self._computing(), autocast(self.device, dtype):
            feats = self.model.encode_images(inputs.to(self.device))
        return feats if dtype is None else feats.to(dtype=torch.float32)

    def decode_click(
        self, feats: ImageFeatures, xy: tuple[float, float], size: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """SAM2's masks for one click on an encoded target (no references involved; nothing encoded).

        Args:
            feats: the target's features (:meth:`encode`, a batch of 1).
            xy: the click, pixel ``(x, y)`` of the target.
            size: the target's ``(H, W)``.

        Returns:
            ``bool [3, H, W]`` the decoder's three candidate masks and ``float32 [3]`` their IoU estimates.
        """
        height, width = size
        points = self.transform.coords(np.asarray([xy], dtype=np.float32), height, width)
        logits, iou = self._point_decoder(feats)(points)
        masks = self.transform.logits_to_image(logits[0][:, None], height, width) > 0
        return masks.numpy(), iou[0].float().numpy()

    def segment_encoded(
        self,
        feats: ImageFeatures,
        sizes: Sequence[tuple[int, int]],
        names: Sequence[str],
        objects: ObjectOptions | bool = True,
        keep_logits: bool = False,
    ) -> list[Segmentation]:
        """Every class in ``B`` already encoded targets, and each class's objects.

        Classes whose memories have the same length go through memory attention and the decoder
        as one batch (``classes x targets``), in chunks of at most ``ATTENTION_BUDGET`` memory
        tokens times batch, so that many classes cost little more than one. Objects cost decoder
        calls only: clicks inside each class's mask, on the target's features (see :mod:`sansa.objects`).

        Args:
            feats: :meth:`encode` output for ``B`` targets.
            sizes: ``(H, W)`` of each target: the size the results are returned at.
            names: each target's display name.
            objects: ``True``: find objects with :attr:`objects` (this predictor's
                :class:`~sansa.objects.ObjectOptions`); an ``ObjectOptions``: with those;
                ``False``: no objects (``Segmentation.objects`` stays empty).
            keep_logits: keep each class's ``float32 [H, W]`` logits in ``Prediction.logits``
                (4 bytes a pixel a class; masks are kept either way).
        """
        self._require_references()
        options = self.objects if objects is True else (objects or None)
        decoded: list[dict[str, tuple[torch.Tensor, float]]] = [{} for _ in sizes]
        with self._computing():
            for labels in self._class_chunks(len(sizes)):
                memory = MemoryTokens.stack([self.memory(label) for label in labels])
                out = self.model.decode_targets(ImageFeatures.cat([feats] * len(labels)), memory, *self._head_dtypes())
                for c, label in enumerate(labels):
                    for b in range(len(sizes)):
                        index = c * len(sizes) + b
                        decoded[b][label] = (out.low_res_logits[index], float(out.iou[index]))
            return [
                self._segmentation(feats[b], decoded[b], sizes[b], names[b], options, keep_logits)
                for b in range(len(sizes))
            ]

    @property
    def default_batch_size(self) -> int:
        """Targets to encode together: 4 on a GPU (or MPS), 1 on the CPU (where batches are slower)."""
        return 1 if self.device.type == "cpu" else ACCELERATOR_BATCH_SIZE

    def segment_many(
        self,
        targets: Iterable[ImageLike] | str | os.PathLike[str],
        batch_size: int | None = None,
        on_error: str = "raise",
        objects: ObjectOptions | bool = True,
        keep_logits: bool = False,
    ) -> Iterator[Segmentation | FailedTarget]:
        """Stream :meth:`segment_batch` over any number of targets, ``batch_size`` at a time
        (default: :attr:`default_batch_size`), in order.

        Args:
            targets: images (paths, PIL images, arrays), or one folder (its images, sorted) or
                glob (``"photos/**/*.jpg"``) given as a string or path. Targets that are not
                paths are named ``target <i>``, ``i`` counting every target given.
            on_error: ``"raise"``: stop at the first target that cannot be read; ``"skip"``: log
                it and yield a :class:`~sansa.records.FailedTarget` in its place.
            objects, keep_logits: see :meth:`segment_encoded`.
        """
        batch_size = self.default_batch_size if batch_size is None else batch_size
        if batch_size < 1:
            raise SansaError(f"batch_size: must be at least 1, got {batch_size}")
        if on_error not in ("raise", "skip"):
            raise SansaError(f"on_error: 'raise' or 'skip', got {on_error!r}")
        if isinstance(targets, (str, os.PathLike)):
            targets = _expand_targets(targets)
        self._require_references()
        pending: list[tuple[str, np.ndarray | FailedTarget]] = []
        for index, target in enumerate(targets):
            name = _name_of(target, f"target {index}")
            try:
                pending.append((name, load_image(target, "target")))
            except SansaError as err:
                if on_error == "raise":
                    raise
                logger.warning("%s: skipped: %s", name, err)
                pending.append((name, FailedTarget(name, str(err))))
            if sum(isinstance(item, np.ndarray) for _, item in pending) == batch_size:
                yield from self._segment_pending(pending, objects, keep_logits)
                pending = []
        yield from self._segment_pending(pending, objects, keep_logits)

    def memory(self, label: str) -> MemoryTokens:
        """The assembled memory of one class (computed once, cached until its references change)."""
        if label not in self._memory:
            entries = [r.memory for r in self._references if r.label == label]
            if not entries:
                raise SansaError(f"label: no reference of class {label!r} (known: {', '.join(self.labels) or 'none'})")
            with self._computing():
                self._memory[label] = self.model.assemble_memory(entries)
        return self._memory[label]

    # -- internals ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _computing(self) -> Iterator[None]:
        """Inference mode, at :attr:`cpu_threads` intra-op threads on the CPU."""
        with torch.inference_mode(), pinned_threads(self.device, self.cpu_threads):
            yield

    def _part_dtype(self, part: str) -> torch.dtype | None:
        """The autocast type ``part`` runs in (``None``: fp32); see :attr:`autocast_parts`."""
        return part_dtype(part, self._autocast_dtype, self.autocast_parts)

    def _head_dtypes(self) -> tuple[torch.dtype | None, torch.dtype | None]:
        """The autocast types of memory attention and the target's decoder."""
        return self._part_dtype("memory_attention"), self._part_dtype("decoder")

    def _require_references(self) -> None:
        if not self._references:
            raise SansaError("no reference added yet: call add_reference() first")

    def _class_chunks(self, num_targets: int) -> list[list[str]]:
        """The classes, grouped by memory length and chunked to fit ``ATTENTION_BUDGET``."""
        groups: dict[int, list[str]] = {}
        for label in self.labels:
            groups.setdefault(len(self.memory(label)), []).append(label)
        chunks = []
        for length, labels in groups.items():
            size = max(1, ATTENTION_BUDGET // (length * num_targets))
            chunks += [labels[i : i + size] for i in range(0, len(labels), size)]
        return chunks

    def _single_label(self, label: str | None) -> str:
        self._require_references()
        if label is not None:
            return label
        if len(self.labels) > 1:
            raise SansaError(f"label: references cover {len(self.labels)} classes ({', '.join(self.labels)}); name one")
        return self.labels[0]

    def _decode_reference(self, feats: ImageFeatures, prompt: Prompt, height: int, width: int) -> Decoded:
        if prompt.mask is not None:
            return self.model.decode_mask(feats, self.transform.mask(prompt.mask).to(self.device))
        inputs = self.transform.point_prompt(prompt, height, width)
        return self.model.decode_prompt(feats, {k: v.to(self.device) for k, v in inputs.items()})

    def _segment_pending(
        self, pending: list[tuple[str, np.ndarray | FailedTarget]], objects: ObjectOptions | bool, keep_logits: bool
    ) -> Iterator[Segmentation | FailedTarget]:
        """Segment the images of ``pending`` as one batch; yield results and failures in order."""
        images = [(name, item) for name, item in pending if isinstance(item, np.ndarray)]
        done: Iterator[Segmentation] = iter([])
        if images:
            sizes = [image.shape[:2] for _, image in images]
            feats = self.encode([image for _, image in images])
            done = iter(self.segment_encoded(feats, sizes, [n for n, _ in images], objects, keep_logits))
        for _, item in pending:
            yield item if isinstance(item, FailedTarget) else next(done)

    def _segmentation(
        self,
        frame: ImageFeatures,
        decoded: dict[str, tuple[torch.Tensor, float]],
        size: tuple[int, int],
        name: str,
        objects: ObjectOptions | None,
        keep_logits: bool,
    ) -> Segmentation:
        """One target's :class:`Segmentation` from each class's decoder logits ``[1, S/4, S/4]``."""
        labels = self.labels
        logits = self.transform.logits_to_image(torch.stack([decoded[label][0] for label in labels]), *size)
        label_map = resolve_label_map(logits)
        masks = (logits > 0).cpu().numpy()
        predictions = {
            label: Prediction(
                logits=logits[c].cpu().numpy() if keep_logits else None,
                score=decoded[label][1],
                label=label,
                mask=masks[c],
            )
            for c, label in enumerate(labels)
        }
        del logits
        segmentation = Segmentation(predictions, labels, label_map, name)
        if objects is not None:
            scores = [decoded[label][1] for label in labels]
            segmentation.objects, segmentation.label_map = find_objects(
                self._point_decoder(frame), label_map, labels, scores, objects, self.model.image_size
            )
        return segmentation

    def _point_decoder(self, frame: ImageFeatures) -> Decoder:
        """Single clicks (model coordinates ``[N, 2]``) decoded on one target's features: three
        candidate masks each (see :meth:`SansaModel.decode_points`), returned on the CPU."""

        def decode(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            coords = points.to(self.device, torch.float32)[:, None, :]
            labels = torch.ones(len(points), 1, dtype=torch.int32, device=self.device)
            with self._computing(), autocast(self.device, self._part_dtype("decoder")):
                logits, iou = self.model.decode_points(frame, coords, labels)
            return logits.cpu(), iou.cpu()

        return decode


def _trained_model(
    sam2_checkpoint: str | os.PathLike[str],
    adapter_checkpoint: str | os.PathLike[str] | None,
    model: str | os.PathLike[str],
) -> SansaModel:
    """A SANSA model with Meta's SAM2 weights and (optionally) trained adapters, in eval mode.

    The adapter file's stages and channel factor are inferred from its tensor shapes and
    checked against the backbone; any mismatch is a :class:`~sansa.errors.CheckpointError`.
    """
    if adapter_checkpoint is None:
        sansa = build_sansa(model)
    else:
        weights = read_adapter_checkpoint(adapter_checkpoint)
        sam, stage_sizes, name = resolve_backbone(model)
        layout = infer_adapter_layout(weights, sam.image_encoder.trunk, stage_sizes, adapter_checkpoint, name)
        sansa = SansaModel(sam, stage_sizes, layout.stages, layout.channel_factor)
        load_adapter_weights(sansa, weights, adapter_checkpoint)
    load_sam2_checkpoint(sansa, sam2_checkpoint)
    return sansa.eval()


def _random_model(model: str | os.PathLike[str], adapter_checkpoint: str | os.PathLike[str] | None) -> SansaModel:
    """A seeded random-weight model (the same every call)."""

    if adapter_checkpoint is not None:
        raise SansaError("adapter_checkpoint: give sam2_checkpoint too (None builds random weights)")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_sansa(model)


def _backbone_name(model: SansaModel) -> str:
    """The registered backbone ``model`` is built on (``hiera_large``), else its trunk's shape."""
    width = model.sam.image_encoder.trunk.channel_list[-1]
    for variant in VARIANTS.values():
        if tuple(variant.stages) == model.stage_sizes and variant.embed_dim == width:
            return variant.name
    return f"Hiera({width} wide, stages {list(model.stage_sizes)})"


def _expand_targets(spec: str | os.PathLike[str]) -> list[str]:
    """The images of a folder or glob (sorted); a string is never iterated as characters."""

    if not glob.has_magic(os.fspath(spec)) and not Path(spec).exists():
        raise SansaError(f"targets {os.fspath(spec)}: no such folder or file (give a folder, a glob or a list)")
    found, _ = find_targets([os.fspath(spec)], recursive=False)
    if not found:
        raise SansaError(f"targets {os.fspath(spec)}: no images found")
    return [target.path for target in found]


def _name_of(source: ImageLike, fallback: str) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else fallback
