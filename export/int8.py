"""int8 ONNX graphs of the two streams: static quantization calibrated on real preprocessed inputs.

Activation ranges come from clips and log-mel windows of real recordings, made by the same frontend
that annotation runs (faces, alignment, masks, clip assembly, aural windows): random or synthetic
inputs would calibrate the ranges of inputs the network never sees. Weights are int8 per output
channel, activations uint8 per tensor (QDQ format: ONNX Runtime fuses the pairs into its integer
convolution kernels, VNNI/AMX where the CPU has them). The fusion head (one small linear layer)
stays float32.

Parity of an int8 graph is not 1e-4 of the output scale; what matters is whether the decoded
predictions agree, so the export measures agreement with the float32 graphs on inputs held out from
calibration and records it in the manifest.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Sequence

import numpy as np

from tsav_deploy.artifacts.manifest import INT8_FILES, constant_inputs
from tsav_deploy.errors import TsavError
from tsav_deploy.export.verify import relative_error
from tsav_deploy.faces import FaceBackend, get_backend, select_tracks
from tsav_deploy.inputs.windows import SpecWindows
from tsav_deploy.pipeline.frontend import audio_track, iter_clips, scan_faces
from tsav_deploy.results.predictions import decode
from tsav_deploy.train.metrics import ccc

QUANTIZED_PARTS = {"visual": "clip", "aural": "spec"}  # part -> its input's name
TARGETS_PER_VIDEO = 16  # frames sampled evenly over each calibration video


def calibration_inputs(
    videos: Sequence[str | os.PathLike], backend: FaceBackend | None = None, per_video: int = TARGETS_PER_VIDEO
) -> dict[str, np.ndarray]:
    """``{"clip": [N,4,8,112,112], "spec": [N,1,64,1001]}`` of frames spread evenly over ``videos``
    (the main person's clips), exactly as annotation would feed them to the network."""
    backend = backend or get_backend("dlib")
    clips, specs = [], []
    for video in videos:
        timeline = scan_faces(video, backend)
        if timeline.frames == 0:
            continue
        tracks = select_tracks(timeline.tracks, "main")
        targets = np.unique(np.linspace(0, timeline.frames - 1, per_video).round().astype(np.int64))
        is_target = np.zeros(timeline.frames, dtype=bool)
        is_target[targets] = True
        clips += [
            c[0] for _, _, c, _ in iter_clips(video, timeline, [t.id for t in tracks], is_target) if c is not None
        ]
        wave, _ = audio_track(video)
        specs.append(SpecWindows(wave).frame_windows(timeline.times[targets]))
    if not clips:
        raise TsavError("int8 calibration: none of the calibration videos yielded a frame")
    # The frontend's two constant inputs are real inputs too; calibrated without them, their values
    # fall outside the quantized ranges. First, so that the exporter's even/odd split puts them among
    # the calibration samples.
    constant = constant_inputs()
    return {
        "clip": np.concatenate([constant["clip"], np.stack(clips)]),
        "spec": np.concatenate([constant["spec"], *specs]),
    }


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over one input, a sample at a time."""

    def __init__(self, name: str, samples: np.ndarray):
        self._feeds = iter([{name: sample[None]} for sample in samples])

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


def quantize_streams(
    onnx_files: dict[str, pathlib.Path], folder: pathlib.Path, inputs: dict[str, np.ndarray]
) -> dict[str, pathlib.Path]:
    """Write ``visual.int8.onnx`` and ``aural.int8.onnx`` into ``folder``, calibrated on ``inputs``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    paths = {}
    with tempfile.TemporaryDirectory(prefix="tsav-int8-") as scratch:
        for part, name in QUANTIZED_PARTS.items():
            # Shape inference and graph folding first (ONNX Runtime's advice): BatchNorm folds into the
            # convolutions, so it is quantized with them rather than on its own.
            prepared = pathlib.Path(scratch) / f"{part}.onnx"
            quant_pre_process(str(onnx_files[part]), str(prepared))
            paths[part] = folder / INT8_FILES[part]
            quantize_static(
                str(prepared),
                str(paths[part]),
                _Reader(name, inputs[name]),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
    return paths


def agreement(reference: np.ndarray, quantized: np.ndarray) -> dict[str, float]:
    """How far int8 logits' decoded predictions agree with float32 ones (``[N, 17]`` each)."""
    a, b = decode(reference), decode(quantized)
    result = {
        "samples": int(len(reference)),
        "expression_argmax": float(np.mean(a.expression == b.expression)),
        "au_decisions": float(np.mean(a.au == b.au)),
        "valence_max_abs": float(np.abs(a.valence - b.valence).max()),
        "arousal_max_abs": float(np.abs(a.arousal - b.arousal).max()),
        # Undecoded too: with untrained (e.g. seeded) weights valence/arousal saturate at the clip.
        "logits_relative_error": relative_error(quantized, reference),
    }
    for name, x, y in (("valence_ccc", a.valence, b.valence), ("arousal_ccc", a.arousal, b.arousal)):
        result[name] = ccc(x, y)
    return result
