"""The training loop: episodes -> loss -> AdamW on the adapters, checkpoints, logs, validation.

Typical use (or ``sansa train CONFIG.yaml``; ``torchrun --nproc_per_node N -m sansa train ...``)::

    from sansa.train import load_config, train
    result = train(load_config("configs/train/coco20i_fold0.yaml"))
"""

from __future__ import annotations

import inspect
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.nn.parallel import DistributedDataParallel

from sansa.data.episode import FewShotDataset
from sansa.errors import SansaError
from sansa.model.adapters import freeze_all_but_adapters
from sansa.model.build import build_sansa
from sansa.model.checkpoint import load_sam2_checkpoint
from sansa.model.sansa import SansaModel
from sansa.train import distributed as dist_utils
from sansa.train.checkpoint import LAST, FrozenGuard, load_resume, metadata, save_checkpoint
from sansa.train.config import TrainConfig, ValSpec, save_config
from sansa.train.datasets import build_training_datasets
from sansa.train.episodes import EpisodeSource, StepSchedule, episode_loader
from sansa.train.losses import MaskLoss
from sansa.train.objective import EpisodeObjective, set_training_mode
from sansa.train.validation import validate

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


@dataclass
class TrainResult:
    """What a run did.

    Attributes:
        step: optimiser steps done in all (including those before a resume).
        checkpoint: the last resumable checkpoint written (``out/last.pth``).
        losses: the global mean loss of every step this call ran.
        validation: per epoch, the validation metrics (empty without ``val``).
    """

    step: int
    checkpoint: Path | None
    losses: list[float] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)


def build_model(config: TrainConfig, device: torch.device) -> SansaModel:
    """SANSA with the config's backbone and adapters; SAM2 weights from ``sam2_checkpoint``
    (random, from the seed, without one); only the adapters trainable; training mode set."""

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # the same fresh adapters (and random SAM2) on every rank
        model = build_sansa(config.backbone, config.adapter_stages, config.channel_factor)
    if config.sam2_checkpoint is not None:
        load_sam2_checkpoint(model, config.sam2_checkpoint)
    model.to(device)
    freeze_all_but_adapters(model)
    set_training_mode(model)
    return model


def _resolution(config: TrainConfig, datasets: Sequence[FewShotDataset]) -> int:
    if config.resolution is not None:
        return config.resolution
    sizes = {getattr(d, "image_size", None) for d in datasets}
    if len(sizes) != 1 or None in sizes:
        raise SansaError("resolution: the datasets have different (or no) evaluation sizes; set resolution")
    return int(sizes.pop() or 0)


class Trainer:
    """One run of :func:`train` (see there)."""

    def __init__(
        self, config: TrainConfig, ctx: dist_utils.DistContext, datasets: Sequence[FewShotDataset] | None = None
    ) -> None:
        self.config: TrainConfig = config
        self.ctx: dist_utils.DistContext = ctx
        self.out: Path = Path(config.out)
        dist_utils.seed_everything(config.seed, ctx.rank)
        if ctx.device.type == "cuda" and config.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        datasets = list(datasets) if datasets is not None else build_training_datasets(config.data, config.shots)
        self.model: SansaModel = build_model(config, ctx.device)
        self.guard: FrozenGuard = FrozenGuard(self.model)
        weights = [d.weight for d in config.data] if len(config.data) == len(datasets) else [1.0] * len(datasets)
        self.source: EpisodeSource = EpisodeSource(
            datasets,
            weights,
            config.shots,
            config.targets,
            config.prompt,
            _resolution(config, datasets),
            self.model.image_size,
            config.seed,
        )
        per_epoch = config.episodes_per_epoch or self.source.pairs()
        self.schedule: StepSchedule = StepSchedule(per_epoch, config.batch_size, ctx.rank, ctx.world_size)
        self.total_steps: int = self.schedule.steps_per_epoch * config.epochs
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer: torch.optim.AdamW = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler: torch.optim.lr_scheduler.LambdaLR = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: _cosine(s, self.total_steps)
        )
        loss = MaskLoss(config.focal_alpha, config.focal_gamma, config.focal_weight, config.dice_weight)
        objective = EpisodeObjective(self.model, loss, config.shots)
        self.objective: EpisodeObjective | DistributedDataParallel = (
            _data_parallel(objective) if ctx.distributed else objective
        )
        self.step: int = 0
        self.writer: SummaryWriter | None = None

    # -- the run ----------------------------------------------------------------------
    def run(self, until_step: int | None = None) -> TrainResult:
        last = self.out / LAST
        if last.is_file():
            self.step = load_resume(
                last, self.model, self.optimizer, self.scheduler, self.config.training_fields()
            ).step
            self._say(f"resuming {last} at step {self.step}/{self.total_steps}")
        elif self.ctx.is_main:
            save_config(self.config, self.out / "config.yaml")
        result = TrainResult(self.step, last if last.is_file() else None)
        stop = self.total_steps if until_step is None else min(until_step, self.total_steps)
        try:
            while self.step < stop:
                epoch, start = divmod(self.step, self.schedule.steps_per_epoch)
                self._epoch(epoch, start, stop, result)
                if self.step % self.schedule.steps_per_epoch == 0:
                    self._save(last, resumable=True)
                    self._save(self.out / f"epoch_{epoch + 1}.pth", resumable=False)
                    result.checkpoint = last
                    if self.config.val is not None:
                        result.validation.append(self._validate(epoch + 1, self.config.val))
            if self.step % self.schedule.steps_per_epoch:  # stopped inside an epoch
                self._save(last, resumable=True)
                result.checkpoint = last
        finally:
            if self.writer is not None:
                self.writer.close()
        result.step = self.step
        return result

    def _epoch(self, epoch: int, start: int, stop: int, result: TrainResult) -> None:
        loader = episode_loader(
            self.source, self.schedule, epoch, start, self.config.num_workers, pin_memory=self.ctx.device.type == "cuda"
        )
        bar = _progress(self.ctx.is_main, len(loader), f"epoch {epoch + 1}/{self.config.epochs}")
        tick, episodes = time.perf_counter(), 0
        for batch in loader:
            loss = self._train_step(batch)
            result.losses.append(loss)
            episodes += self.config.batch_size
            if self.step % self.config.log_every == 0 or self.step == stop:
                rate = episodes / max(time.perf_counter() - tick, 1e-9)
                self._log(loss, rate)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.lr:.2e}", eps=f"{rate:.1f}")
                tick, episodes = time.perf_counter(), 0
            bar.update(1)
            if self.config.save_every and self.step % self.config.save_every == 0 and self.step < stop:
                self._save(self.out / LAST, resumable=True)
                result.checkpoint = self.out / LAST
            if self.step >= stop:
                break
        bar.close()

    def _train_step(self, batch) -> float:
        batch = batch.to(self.ctx.device)
        with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.config.bf16):
            out = self.objective(batch)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.config.grad_clip > 0:  # 0 disables clipping (it must never zero the gradients)
            self.grad_norm: float = float(torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip))
        else:
            self.grad_norm = float(
                torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None])
                )
            )
        self.lr: float = float(self.scheduler.get_last_lr()[0])  # the rate this step used
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        loss = out.loss.detach().float().reshape(1)
        return float(dist_utils.all_reduce_sum(loss, self.ctx)) / self.ctx.world_size

    # -- side work ----------------------------------------------------------------------
    def _save(self, path: Path, resumable: bool) -> None:
        if self.ctx.is_main:
            digest = self.guard.check(self.optimizer)
            meta = metadata(
                self.model, self.config.to_dict(), self.step, self.step // self.schedule.steps_per_epoch, digest
            )
            save_checkpoint(
                path, self.model, meta, self.optimizer if resumable else None, self.scheduler if resumable else None
            )
        dist_utils.barrier(self.ctx)

    def _log(self, loss: float, rate: float) -> None:
        if not self.ctx.is_main:
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tensorboard"))
        self.writer.add_scalar("train/loss", loss, self.step)
        self.writer.add_scalar("train/lr", self.lr, self.step)
        self.writer.add_scalar("train/grad_norm", self.grad_norm, self.step)
        self.writer.add_scalar("train/episodes_per_s", rate, self.step)
        self.writer.add_scalar("train/images_per_s", rate * (self.config.shots + self.config.targets), self.step)

    def _validate(self, epoch: int, val: ValSpec) -> dict[str, Any]:

        self.model.eval()
        try:
            metrics = validate(self.model, val, self.ctx)
        finally:
            set_training_mode(self.model)
        if self.ctx.is_main:
            self._say(f"epoch {epoch}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
            if self.writer is not None:
                for key, value in metrics.items():
                    self.writer.add_scalar(f"val/{key}", value, self.step)
        return {"epoch": epoch, **metrics}

    def _say(self, text: str) -> None:
        if self.ctx.is_main:
            print(text, file=sys.stderr, flush=True)


def _data_parallel(objective: EpisodeObjective) -> DistributedDataParallel:
    """DDP over the adapters; SAM2's buffers are frozen and equal on every rank, so never re-sent."""
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    flag = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    off: dict[str, Any] = {flag: False}
    return DistributedDataParallel(objective, **off)


def _cosine(step: int, total: int) -> float:
    """Learning-rate factor: cosine from 1 to 0 over ``total`` steps, no warm-up."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def _progress(enabled: bool, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def train(
    config: TrainConfig, datasets: Sequence[FewShotDataset] | None = None, until_step: int | None = None
) -> TrainResult:
    """Train adapters as ``config`` says, resuming from ``config.out/last.pth`` when it exists.

    Runs in a single process, or in every process of a ``torchrun`` launch (data parallel: each
    rank takes ``batch_size / world_size`` episodes of every step).

    Args:
        config: the run.
        datasets: training datasets to use instead of building ``config.data`` (e.g. in-memory ones).
        until_step: stop (with a resumable checkpoint) after this many steps in all, as an
            interruption would.
    """
    ctx = dist_utils.setup(config.device)
    try:
        return Trainer(config, ctx, datasets).run(until_step)
    finally:
        dist_utils.teardown(ctx)
