"""``tsav train``: the paper's recipe (docs/outputs-and-training.md) on the preprocess cache.

Adam (lr 1e-3) on the summed losses, 320 clips per step by gradient accumulation over micro-batches,
flip + HSV jitter, pseudo valence, validation with the ABAW 2020 metrics every ``val_every`` steps,
the best step's weights kept (``best.pt``), early stop after ``patience`` validations without a better
score, and optionally the final model: train + validation for 1.25× the best step count (``final.pt``).
Mixed precision on GPUs (bf16 where supported, else fp16 with loss scaling). Data parallel over
``torchrun`` processes (:mod:`.ddp`): every process computes its share of each step's micro-batches.

The validation criterion is the mean of the ABAW task criteria that the validation labels allow:
CCC mean (valence, arousal), expression 0.67·F1 + 0.33·accuracy, AU 0.5·F1 + 0.5·accuracy.

Run folder: ``config.json``, ``best.pt``, ``final.pt``, ``state.pt`` (for ``--resume``),
``curves.json`` and ``train_curve.csv`` / ``validation_curve.csv``. The state is saved at each
validation, every ``save_every_s`` seconds, and when Ctrl-C or SIGTERM stops the run (:mod:`.interrupt`).
Progress (steps, clips per second, loss, time left) goes to a :class:`~.progress.Progress`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import pathlib
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from tsav_deploy.artifacts.checkpoint import save_checkpoint
from tsav_deploy.atomic import atomic_path, write_text
from tsav_deploy.download import DownloadError
from tsav_deploy.errors import TsavError
from tsav_deploy.model import TSAV, ModelConfig
from tsav_deploy.results.predictions import decode
from tsav_deploy.train import ddp
from tsav_deploy.train.cache import CacheIndex, open_cache
from tsav_deploy.train.dataset import (
    ClipDataset,
    Samples,
    StepSchedule,
    build_samples,
    fit_histograms,
    normalization_table,
    normalize_batch,
)
from tsav_deploy.train.interrupt import StopRequest, ignore_in_worker, resume_command, stop
from tsav_deploy.train.labels import read_annotations
from tsav_deploy.train.losses import tsav_loss
from tsav_deploy.train.metrics import au_scores, expression_scores, va_scores
from tsav_deploy.train.progress import Progress, available_cores, cap_workers, make_progress
from tsav_deploy.train.pseudo_labels import DEFAULT_PSEUDO, VAHistograms, check_kinds

ARCHITECTURES = {"paper": ModelConfig(), "reduced": ModelConfig.reduced()}
AMP_MODES = ("auto", "off", "bf16", "fp16")
FINAL_FACTOR = 1.25
LOSS_PARTS = ("expression", "valence", "arousal", "au")


@dataclass
class TrainConfig:
    annotations: pathlib.Path
    cache: pathlib.Path
    out: pathlib.Path
    arch: str = "paper"
    pretrained: str | None = "auto"  # a weights name or path; "auto": Kinetics-400 for the paper network
    steps: int = 3000  # at most this many steps
    batch: int = 320
    micro_batch: int = 32
    lr: float = 1e-3
    val_every: int = 100
    patience: int = 10  # validations without improvement before stopping; 0 = never stop early
    val_stride: int = 1  # score every n-th annotated validation frame (1 = all)
    pseudo: tuple[str, ...] = DEFAULT_PSEUDO
    final: bool = False
    resume: bool = False
    seed: int = 0
    workers: int = 4
    amp: str = "auto"
    device: str = "auto"
    save_every_s: float = 600.0  # also save the state for --resume this often (seconds; 0: only at validations)

    def __post_init__(self) -> None:
        self.annotations, self.cache, self.out = (pathlib.Path(p) for p in (self.annotations, self.cache, self.out))
        if self.arch not in ARCHITECTURES:
            raise TsavError(f"unknown --arch {self.arch!r}: choose {', '.join(ARCHITECTURES)}")
        if self.amp not in AMP_MODES:
            raise TsavError(f"unknown --amp {self.amp!r}: choose {', '.join(AMP_MODES)}")
        if min(self.steps, self.batch, self.micro_batch, self.val_every, self.val_stride) < 1:
            raise TsavError("--steps, --batch, --micro-batch, --val-every and --val-stride must be positive")
        self.pseudo = check_kinds(self.pseudo)

    def to_dict(self) -> dict:
        return {
            k: (str(v) if isinstance(v, pathlib.Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(self).items()
        }


@dataclass
class TrainResult:
    run_dir: pathlib.Path
    best_step: int
    best_scores: dict
    best_checkpoint: pathlib.Path
    final_checkpoint: pathlib.Path | None
    curves: dict


@dataclass
class TrainingData:
    cache: CacheIndex
    histograms: VAHistograms
    train: Samples
    validation: Samples
    train_and_validation: Samples

    def describe(self, config: TrainConfig) -> dict:
        return {
            "cache": str(config.cache),
            "annotations": str(config.annotations),
            "faces": self.cache.faces,
            "train": {"videos": len(set(self.train.video.tolist())), "samples": len(self.train)},
            "validation": {"videos": len(set(self.validation.video.tolist())), "frames": len(self.validation)},
            "notes": sorted(set(self.train.notes + self.validation.notes)),
        }


def load_training_data(config: TrainConfig) -> TrainingData:
    """Annotations (bad files raise ``LabelError`` naming file and line), cache, histograms, samples."""
    annotations = read_annotations(config.annotations)
    cache = open_cache(config.cache)
    if not annotations["train"]:
        raise TsavError(f"{config.annotations}: no training annotations (…/Train_Set or …/Training_Set)")
    histograms = fit_histograms(annotations["train"], cache)
    train = build_samples(annotations["train"], cache, training=True, histograms=histograms, pseudo=config.pseudo)
    validation = build_samples(annotations["validation"], cache, training=False)
    validation_as_training = build_samples(
        annotations["validation"], cache, training=True, histograms=histograms, pseudo=config.pseudo
    )
    if not len(train):
        raise TsavError("no usable training frames (no face found, or every frame filtered out)")
    if not len(validation):
        raise TsavError(
            f"{config.annotations}: no validation annotations (…/Validation_Set); training stops at the best validation score"
        )
    return TrainingData(cache, histograms, train, validation, Samples.concatenate([train, validation_as_training]))


# --- model ---------------------------------------------------------------------------------------------


def build_model(config: TrainConfig) -> TSAV:
    """A fresh network (seeded), the visual stream from Kinetics-400 where asked (docs/model-contract.md)."""
    from tsav_deploy.artifacts.weights import resolve
    from tsav_deploy.model.pretrained import init_visual_from_kinetics

    torch.manual_seed(config.seed)
    model = TSAV(ARCHITECTURES[config.arch])
    source = config.pretrained
    if source == "auto":
        source = "r2plus1d_18-kinetics400" if config.arch == "paper" else None
    if source not in (None, "", "none"):
        if config.arch != "paper":
            raise TsavError("--pretrained needs the paper network (--arch paper); the reduced one has other widths")
        try:
            path = resolve(source)
        except DownloadError as exc:  # its remedy names annotate's option; train's is --pretrained
            message = str(exc).replace("--weights PATH", "--pretrained PATH (or --pretrained none)")
            raise DownloadError(message) from None
        init_visual_from_kinetics(model, path)
    return model


def _autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or config.amp == "off":
        return None
    if config.amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[config.amp]


def _autocast(dtype: torch.dtype | None, device: torch.device):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


# --- validation ----------------------------------------------------------------------------------------


def validation_scores(logits: np.ndarray, samples: Samples) -> dict[str, float]:
    """ABAW 2020 metrics of the validation frames and the criterion (module docstring)."""
    predictions = decode(logits)
    va = va_scores(np.stack([predictions.valence, predictions.arousal], 1), samples.va)
    expression = expression_scores(predictions.expression, samples.expr)
    au = au_scores(predictions.au, samples.au)
    scores = {
        "ccc_valence": va["ccc_valence"],
        "ccc_arousal": va["ccc_arousal"],
        "ccc_mean": va["ccc_mean"],
        "expr_f1": expression["f1"],
        "expr_accuracy": expression["accuracy"],
        "expr_criterion": expression["criterion"],
        "au_f1": au["f1"],
        "au_accuracy": au["accuracy"],
        "au_criterion": au["criterion"],
    }
    criteria = [v for v in (va["ccc_mean"], expression["criterion"], au["criterion"]) if math.isfinite(v)]
    scores["criterion"] = float(np.mean(criteria)) if criteria else float("nan")
    return {k: float(v) for k, v in scores.items()}


def _loader(dataset: ClipDataset, batches, workers: int, device: torch.device):
    """An iterator over the batches. Its own seeded generator: every random choice of an item comes from
    the item's key (dataset.item_rng), and making a loader then leaves torch's global generator alone."""
    with warnings.catch_warnings():
        # Workers are capped to the cores (progress.cap_workers), which the user is told once.
        warnings.filterwarnings("ignore", message=".*DataLoader will create", category=UserWarning)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            worker_init_fn=_quiet_worker,
            generator=torch.Generator().manual_seed(0),
        )
        return iter(loader)


def _quiet_worker(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # loader workers run side by side: one thread each
    ignore_in_worker()


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    dataset: ClipDataset,
    rows: np.ndarray,
    *,
    batch: int,
    workers: int,
    device: torch.device,
    dtype: torch.dtype | None,
) -> np.ndarray:
    """Logits ``[len(rows), 17]`` float32 for sample ``rows`` (no augmentation)."""
    model.eval()
    batches = [rows[i : i + batch].tolist() for i in range(0, len(rows), batch)]
    table = normalization_table().to(device)
    out = []
    for items in _loader(dataset, batches, workers, device):
        clip = normalize_batch(items["crops"].to(device, non_blocking=True), table)
        with _autocast(dtype, device):
            logits = model(clip, items["spec"].to(device, non_blocking=True))
        out.append(logits.float().cpu().numpy())
    model.train()
    return np.concatenate(out) if out else np.zeros((0, 17), np.float32)


# --- one training phase --------------------------------------------------------------------------------


class _StepBatches:
    """A DataLoader batch_sampler over steps ``[first, last)`` of a schedule (re-iterable)."""

    def __init__(self, schedule: StepSchedule, first: int, last: int):
        self.schedule, self.first, self.last = schedule, first, last

    def __iter__(self):
        return self.schedule.batches(self.first, self.last)

    def __len__(self) -> int:
        return (self.last - self.first) * self.schedule.micro_batches_per_rank


@dataclass
class Phase:
    """One run of the loop: the validation phase (``validate=True``) or the final phase (fixed steps)."""

    name: str
    folder: pathlib.Path
    samples: Samples
    steps: int
    validate: bool
    curves: dict = field(default_factory=lambda: {"train": [], "validation": []})
    best_step: int = 0
    best_scores: dict = field(default_factory=dict)
    stale: int = 0  # validations since the last improvement
    step: int = 0


@dataclass
class _Loop:
    """What one phase's loop works with."""

    model: TSAV
    wrapped: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loader: Iterator[dict]
    per_rank: int  # micro-batches per step in this process
    table: torch.Tensor  # normalization_table() on the device
    validation: ClipDataset


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        data: TrainingData,
        context: ddp.Distributed,
        log: Callable[[str], None] | None = None,
        table: Callable[[dict, dict, bool], None] | None = None,
        progress: Progress | None = None,
    ):
        self.config, self.data, self.context = config, data, context
        self.log = log or (lambda _: None)
        self.progress = progress or Progress()
        self.table = table or self.progress.validation
        self.dtype = _autocast_dtype(config, context.device)
        # One loader per process; torchrun's processes on this machine share its cores.
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        self.workers, note = cap_workers(config.workers, max(1, available_cores() // local))
        if note:
            self.log(note)
        self.saved_at = time.monotonic()

    # -- state on disk --

    def _state_path(self, phase: Phase) -> pathlib.Path:
        return phase.folder / "state.pt"

    def _save_state(self, phase: Phase, model: TSAV, optimizer, scaler) -> None:
        if not self.context.is_main:
            return
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "phase": {k: getattr(phase, k) for k in ("name", "curves", "best_step", "best_scores", "stale", "step")},
        }
        with atomic_path(self._state_path(phase)) as tmp:
            torch.save(state, tmp)
        self._write_curves(phase)
        self.saved_at = time.monotonic()

    def _load_state(self, phase: Phase, model: TSAV, optimizer, scaler) -> None:
        path = self._state_path(phase)
        if not (self.config.resume and path.exists()):
            return
        state = torch.load(path, map_location=self.context.device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        for key, value in state["phase"].items():
            setattr(phase, key, value)
        self.log(f"{phase.name}: resumed at step {phase.step}")

    def _write_curves(self, phase: Phase) -> None:
        write_text(phase.folder / "curves.json", json.dumps(phase.curves, indent=1))
        for kind, rows in phase.curves.items():
            if rows:
                with atomic_path(phase.folder / f"{kind}_curve.csv") as tmp, open(tmp, "w", newline="") as fh:
                    writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(rows)

    def _save_checkpoint(self, path: pathlib.Path, model: TSAV, phase: Phase, scores: dict) -> None:
        if not self.context.is_main:
            return
        save_checkpoint(
            path,
            model,
            training=self.config.to_dict()
            | {"phase": phase.name, "step": phase.step, "scores": scores, "processes": self.context.world},
            data=self.data.describe(self.config),
            extras={
                "pseudo_histograms": self.data.histograms.to_dict(),
                "pseudo_kinds": list(self.config.pseudo),
                "step": phase.step,
            },
        )

    # -- the loop --

    def _prepare(self, phase: Phase) -> _Loop:
        """The network (from the saved state on ``--resume``), optimizer and data of one phase."""
        config, context = self.config, self.context
        model = build_model(config).to(context.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        scaler = torch.amp.GradScaler(context.device.type, enabled=self.dtype == torch.float16)
        self._load_state(phase, model, optimizer, scaler)
        wrapped = model
        if context.active:
            with warnings.catch_warnings():
                # Newer torch renames broadcast_buffers; the old name works on every supported version.
                warnings.filterwarnings("ignore", message=".*broadcast_buffers", category=FutureWarning)
                # Buffers are averaged after each step (ddp.average_buffers), not broadcast in forward.
                wrapped = torch.nn.parallel.DistributedDataParallel(
                    model,
                    device_ids=[context.device.index] if context.device.type == "cuda" else None,
                    broadcast_buffers=False,
                )
        schedule = StepSchedule(
            len(phase.samples),
            config.batch,
            config.micro_batch,
            seed=config.seed,
            rank=context.rank,
            world=context.world,
        )
        dataset = ClipDataset(
            self.data.cache, phase.samples, histograms=self.data.histograms, pseudo=config.pseudo, seed=config.seed
        )
        batches = _StepBatches(schedule, phase.step, phase.steps)
        return _Loop(
            model=model,
            wrapped=wrapped,
            optimizer=optimizer,
            scaler=scaler,
            loader=_loader(dataset, batches, self.workers, context.device),
            per_rank=schedule.micro_batches_per_rank,
            table=normalization_table().to(context.device),
            validation=ClipDataset(self.data.cache, self.data.validation),
        )

    def _step(self, loop: _Loop, request: StopRequest) -> torch.Tensor | None:
        """One optimizer step; the summed loss and its parts of this process's micro-batches, or None when a
        stop was asked for in the middle (a single process then drops the partial step, whose BatchNorm
        statistics are put back, so that the saved state is the last complete step's)."""
        context, model = self.context, loop.model
        buffers = [b.detach().clone() for b in model.buffers()] if not context.active else []
        sums = torch.zeros(1 + len(LOSS_PARTS), dtype=torch.float64)
        for j in range(loop.per_rank):
            if request and not context.active:
                with torch.no_grad():
                    for buffer, saved in zip(model.buffers(), buffers):
                        buffer.copy_(saved)
                loop.optimizer.zero_grad(set_to_none=True)
                return None
            items = next(loop.loader)
            last = j == loop.per_rank - 1
            sync = contextlib.nullcontext() if last or not context.active else loop.wrapped.no_sync()
            clip = normalize_batch(items["crops"].to(context.device, non_blocking=True), loop.table)
            with sync:
                with _autocast(self.dtype, context.device):
                    logits = loop.wrapped(clip, items["spec"].to(context.device, non_blocking=True))
                loss, parts = tsav_loss(
                    logits.float(),
                    expression=items["expression"].to(context.device),
                    va=items["va"].to(context.device),
                    au=items["au"].to(context.device),
                )
                loop.scaler.scale(loss / loop.per_rank).backward()
            sums += torch.tensor([loss.item(), *(parts[name].item() for name in LOSS_PARTS)], dtype=torch.float64)
        loop.scaler.step(loop.optimizer)
        loop.scaler.update()
        loop.optimizer.zero_grad(set_to_none=True)
        ddp.average_buffers(model, context)
        return ddp.all_reduce_sum(sums, context)

    def _record(self, phase: Phase, sums: torch.Tensor, seconds: float) -> None:
        phase.step += 1
        means = (sums / (self.config.batch // self.config.micro_batch)).tolist()
        clips_per_s = self.config.batch / max(seconds, 1e-9)
        phase.curves["train"].append(
            {"step": phase.step, "loss": means[0], **dict(zip(LOSS_PARTS, means[1:])), "clips_per_s": clips_per_s}
        )
        self.progress.step(phase.step, means[0])

    def run(self, phase: Phase) -> Phase:
        """Train ``phase`` to its last step or early stop; a stop signal saves the state and ends the run."""
        config = self.config
        loop = self._prepare(phase)
        loop.model.train()
        self.progress.start(phase.name, phase.step, phase.steps, config.batch)
        try:
            with StopRequest().watch() as request:
                while phase.step < phase.steps and not self._out_of_patience(phase):
                    started = time.perf_counter()
                    sums = self._step(loop, request)
                    if sums is not None:
                        self._record(phase, sums, time.perf_counter() - started)
                        if phase.step % config.val_every == 0 or phase.step == phase.steps:
                            if phase.validate:
                                self._validate(phase, loop.model, loop.validation)
                            self._save_state(phase, loop.model, loop.optimizer, loop.scaler)
                    if ddp.any_true(bool(request), self.context):
                        self._save_state(phase, loop.model, loop.optimizer, loop.scaler)
                        self.progress.finish()
                        self._stop(phase, request.signum or signal.SIGINT)
                    if config.save_every_s and time.monotonic() - self.saved_at >= config.save_every_s:
                        self._save_state(phase, loop.model, loop.optimizer, loop.scaler)
        finally:
            self.progress.finish()
        if not phase.validate:
            self._save_checkpoint(phase.folder / "final.pt", loop.model, phase, {})
        ddp.barrier(self.context)
        return phase

    def _stop(self, phase: Phase, signum: int) -> None:
        """One line: where the state is and how to go on; then end as the signal asks."""
        name = signal.Signals(signum).name
        line = (
            f"{name}: stopped at step {phase.step}/{phase.steps} ({phase.name}); state saved in "
            f"{self._state_path(phase)}; continue with: {resume_command()}"
        )
        self.log(line)
        stop(signum, line)

    def _out_of_patience(self, phase: Phase) -> bool:
        return bool(self.config.patience) and phase.stale >= self.config.patience

    def _validate(self, phase: Phase, model: TSAV, validation: ClipDataset) -> None:
        """Score, keep the best checkpoint, log."""
        config, context = self.config, self.context
        rows = np.arange(0, len(self.data.validation), config.val_stride)
        mine = rows[context.rank :: context.world]
        logits = predict(
            model,
            validation,
            mine,
            batch=config.micro_batch,
            workers=self.workers,
            device=context.device,
            dtype=self.dtype,
        )
        pieces = ddp.gather((mine, logits), context)
        order = np.concatenate([p[0] for p in pieces])
        all_logits = np.concatenate([p[1] for p in pieces])[np.argsort(order)]
        scores = validation_scores(all_logits, self.data.validation.subset(rows))
        recent = phase.curves["train"][-config.val_every :]
        train_loss = float(np.mean([r["loss"] for r in recent])) if recent else float("nan")
        improved = not phase.best_scores or scores["criterion"] > phase.best_scores["criterion"]
        if improved:
            phase.best_step, phase.best_scores, phase.stale = phase.step, scores, 0
            self._save_checkpoint(phase.folder / "best.pt", model, phase, scores)
        else:
            phase.stale += 1
        phase.curves["validation"].append({"step": phase.step, "train_loss": train_loss, **scores})
        self.table(phase.curves["validation"][-1], phase.best_scores, improved)

    # -- both phases --

    def fit(self) -> TrainResult:
        config = self.config
        main = Phase("validation", config.out, self.data.train, config.steps, validate=True)
        self.run(main)
        ddp.barrier(self.context)
        final_checkpoint = None
        if config.final:
            steps = max(1, math.ceil(FINAL_FACTOR * main.best_step))
            self.log(f"final: train + validation for {steps} steps (1.25 × best step {main.best_step})")
            final = Phase("final", config.out / "final", self.data.train_and_validation, steps, validate=False)
            self.run(final)
            final_checkpoint = final.folder / "final.pt"
        return TrainResult(
            config.out, main.best_step, main.best_scores, config.out / "best.pt", final_checkpoint, main.curves
        )


def train(
    config: TrainConfig,
    *,
    log: Callable[[str], None] | None = None,
    table: Callable[[dict, dict, bool], None] | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train per ``config`` in this process, joining torchrun's process group when there is one.

    ``log`` receives notes and, unless ``progress`` is given, the progress: a live bar on a terminal,
    else plain lines (:func:`.progress.make_progress`). ``table`` shows each validation (default: the
    progress's table or line)."""
    context = ddp.setup(config.device)
    try:
        data = load_training_data(config)
        if context.is_main:
            config.out.mkdir(parents=True, exist_ok=True)
            write_text(
                config.out / "config.json", json.dumps(config.to_dict() | {"processes": context.world}, indent=1)
            )
        if not context.is_main:
            return Trainer(config, data, context).fit()
        if progress is None:
            progress = make_progress(log) if log is not None else Progress()
        return Trainer(config, data, context, log=log, table=table, progress=progress).fit()
    finally:
        ddp.teardown(context)
