"""The whole chain on a fresh offline machine, with nothing downloaded: generate a small
Aff-Wild2-shaped synthetic dataset (real faces from images installed packages ship, real sound),
cache it with the shared frontend, train the reduced network for a few steps, export it to ONNX with
verified parity, and annotate a held-out video with an overlay.

The model is a toy: it learns the synthetic cues (brightness, loudness, tints, dots), so its numbers
say nothing about real people. Real predictions need the authors' weights (``--weights``), which
are downloaded once over the network (``tsav weights download``) or copied from where they are.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass

from tsav_deploy.api import Annotation, Predictor
from tsav_deploy.errors import TsavError
from tsav_deploy.export import Exporter
from tsav_deploy.outputs.records import OutputOptions
from tsav_deploy.runs.batch import Batch

Say = Callable[[str], None]


@dataclass
class DemoResult:
    checkpoint: pathlib.Path
    export: pathlib.Path
    annotations: pathlib.Path
    video: pathlib.Path
    validation: dict
    annotation: Annotation


def run_demo(out: str | pathlib.Path, *, steps: int = 16, say: Say = print) -> DemoResult:
    from tsav_deploy.train.preprocess import preprocess
    from tsav_deploy.train.synthetic import make_dataset
    from tsav_deploy.train.trainer import TrainConfig, train

    out = pathlib.Path(out)
    say("1/5 generating a synthetic Aff-Wild2-shaped dataset (faces from installed packages, synthetic sound)")
    data = make_dataset(out / "data", videos=5, seconds=4.0, validation=1, seed=0)
    say(f"    {len(data.videos)} videos in {data.videos_dir}, ABAW annotations in {data.annotations_dir}")
    say("2/5 preprocessing with the shared frontend (dlib faces, alignment, masks, log-mels)")
    report = preprocess(data.videos_dir, out / "cache", faces="dlib", workers=1)
    for stem, reason in report.failed.items():
        say(f"    could not cache {stem}: {reason}")
    say(f"3/5 training the reduced network for {steps} steps on the CPU (a toy model)")
    config = TrainConfig(
        annotations=data.annotations_dir,
        cache=out / "cache",
        out=out / "run",
        arch="reduced",
        pretrained="none",
        steps=steps,
        batch=16,
        micro_batch=16,
        val_every=max(1, steps // 4),
        patience=0,
        workers=0,
        device="cpu",
    )
    result = train(config)
    criteria = {
        k: round(result.best_scores[k], 3)
        for k in ("criterion", "ccc_valence", "ccc_arousal", "expr_criterion", "au_criterion")
        if k in result.best_scores
    }
    say(f"    best validation at step {result.best_step}: {criteria}")
    say("4/5 exporting to ONNX and checking parity with PyTorch")
    export = Exporter(["onnx"])(result.best_checkpoint, out / "export").folder
    say("5/5 annotating the held-out video with an overlay and an HTML report")
    video = next(v.path for v in data.videos if v.split == "validation")
    annotation = _annotate(video, export, out / "annotations")
    return DemoResult(result.best_checkpoint, export, out / "annotations", video, criteria, annotation)


def _annotate(video: pathlib.Path, export: pathlib.Path, folder: pathlib.Path) -> Annotation:
    """The held-out video into ``folder`` as ``tsav annotate --overlay --report`` leaves it (its
    files, index.html and summary.json), through the same batch run."""
    batch = Batch(folder, OutputOptions(overlay=True, report=True, overwrite=True))
    outcomes = list(batch.annotate([video], Predictor(model=export, engine="onnx", faces="dlib")))
    failed = [o.error for o in outcomes if o.status == "failed"]
    if failed:
        raise TsavError(failed[0])
    return next(o.annotation for o in outcomes if o.annotation is not None)
