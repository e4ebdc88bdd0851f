"""MTCNN (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks", 2016) run by OpenVINO, with the weights that the PyPI package ``mtcnn`` (MIT licence) ships
inside its wheel: nothing downloads at run time.

Three networks in cascade: PNet slides a 12×12 window over an image pyramid, RNet (24×24) and ONet
(48×48) re-score and refine its candidates; ONet also gives five key points. A face of ``min_face``
source pixels is 12 pixels at the pyramid's first level, so the cost follows from the smallest face to
find, not from a fixed detector input size: for 24 px faces the first level is half the frame's size.
"""

from __future__ import annotations

import importlib.util
import inspect
import io
import pickle
import threading
from pathlib import Path

import cv2
import numpy as np

from tsav_deploy.faces.face import FaceBackendError, error_summary

PYRAMID_FACTOR = 0.709  # the paper's: each level is half the previous one's area
# Face probability kept after PNet, RNet and ONet. The paper's ONet threshold is 0.7; on the labelled
# frames and scenes (docs/faces.md) every face scored at least 0.93 and 2 of 4 false positives under 0.9.
THRESHOLDS = (0.6, 0.7, 0.9)
# A face already followed needs less evidence to be kept (:meth:`Mtcnn.verify` on its box).
CONFIRM_THRESHOLDS = (0.6, 0.7)
_CELL = 12  # PNet's window
_STRIDE = 2  # PNet's output grid step, in pyramid-level pixels


def weights_dir() -> Path:
    """Folder of the ``mtcnn`` package's weight files, found without importing the package (its
    ``__init__`` imports TensorFlow, which is not needed here)."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or spec.origin is None:
        raise FaceBackendError("the mtcnn face detector needs the mtcnn package: pip install mtcnn")
    return Path(spec.origin).parent / "assets" / "weights"


class _ArraysOnly:
    """joblib's file format is a pickle with NumPy arrays; allow only what a list of arrays needs."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected {module}.{name} in a weight file")
        return super().find_class(module, name)


def _load_arrays(path: Path) -> list[np.ndarray]:
    """The list of arrays in one of the package's joblib + lz4 files, unpickled with an allow-list."""
    import lz4.frame
    from joblib import numpy_pickle

    class Unpickler(_ArraysOnly, numpy_pickle.NumpyUnpickler):
        pass

    # Newer joblib versions take this argument; the arrays in these files are little-endian already.
    native = "ensure_native_byte_order" in inspect.signature(numpy_pickle.NumpyUnpickler).parameters
    try:
        with lz4.frame.open(path, "rb") as stream:
            arrays = Unpickler(str(path), stream, *([True] if native else [])).load()
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as error:
        raise FaceBackendError(f"cannot read the MTCNN weights {path}: {error_summary(error)}") from error
    return [np.asarray(a, dtype=np.float32) for a in arrays]


def _graph(arrays: list[np.ndarray], name: str, stage: int) -> bytes:
    """The ONNX graph of one network (``stage`` 0 PNet, 1 RNet, 2 ONet) from its Keras-ordered weights:
    convolutions (kh, kw, in, out), PReLU slopes, dense layers (in, out). PNet is fully convolutional;
    RNet and ONet flatten in Keras's (width, height, channel) order after its Permute, the original
    Caffe order."""
    from onnx import TensorProto, helper, numpy_helper

    weights = iter(arrays)
    nodes, inits = [], []
    counter = iter(range(1000))

    def const(array: np.ndarray) -> str:
        key = f"w{next(counter)}"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), key))
        return key

    def node(op: str, inputs: list[str], **attrs) -> str:
        out = f"t{next(counter)}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv_prelu(x: str) -> str:
        x = node("Conv", [x, const(next(weights).transpose(3, 2, 0, 1)), const(next(weights))])
        return node("PRelu", [x, const(next(weights).reshape(-1, 1, 1))])

    def pool(x: str, kernel: int, ceil: int) -> str:
        return node("MaxPool", [x], kernel_shape=[kernel, kernel], strides=[2, 2], ceil_mode=ceil)

    # uint8 NHWC in; MTCNN's input is (x − 127.5) / 128, NCHW.
    x = node("Transpose", [node("Cast", ["image"], to=TensorProto.FLOAT)], perm=[0, 3, 1, 2])
    x = node("Mul", [node("Sub", [x, const(np.float32(127.5))]), const(np.float32(0.0078125))])
    x = pool(conv_prelu(x), 2 if stage == 0 else 3, 1)
    if stage > 0:
        x = pool(conv_prelu(x), 3, 0)
    if stage == 2:
        x = pool(conv_prelu(x), 2, 1)
    x = conv_prelu(x) if stage > 0 else conv_prelu(conv_prelu(x))
    if stage > 0:
        x = node("Flatten", [node("Transpose", [x], perm=[0, 3, 2, 1])], axis=1)
        x = node("PRelu", [node("Gemm", [x, const(next(weights)), const(next(weights))]), const(next(weights))])
    heads = []
    for kernel in weights:
        bias = const(next(weights))
        if stage > 0:
            heads.append(node("Gemm", [x, const(kernel), bias]))
        else:
            heads.append(node("Conv", [x, const(kernel.transpose(3, 2, 0, 1)), bias]))
    heads[-1] = node("Softmax", [heads[-1]], axis=1)
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["n", "h", "w", 3])],
        [helper.make_tensor_value_info(h, TensorProto.FLOAT, None) for h in heads],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_min: bool = False) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (overlap over the union, or over the smaller box)."""
    order = np.argsort(-scores)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        base = np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter
        order = rest[inter <= threshold * np.maximum(base, 1e-9)]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    centre = (boxes[:, :2] + boxes[:, 2:4]) / 2
    half = (boxes[:, 2:4] - boxes[:, :2]).max(1, keepdims=True) / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def _apply_regression(boxes: np.ndarray, regression: np.ndarray) -> np.ndarray:
    size = np.concatenate([boxes[:, 2:4] - boxes[:, :2]] * 2, axis=1)
    return boxes[:, :4] + regression * size


def _patches(image: np.ndarray, boxes: np.ndarray, side: int) -> np.ndarray:
    """Square crops of ``boxes`` (zero outside the image) resized to ``side``, as N×side×side×3."""
    height, width = image.shape[:2]
    out = np.zeros((len(boxes), side, side, 3), dtype=np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(np.rint(boxes).astype(np.int64)):
        if x1 <= x0 or y1 <= y0:
            continue
        crop = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if sx1 > sx0 and sy1 > sy0:
            crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
        out[k] = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA if x1 - x0 > side else cv2.INTER_LINEAR)
    return out


class Mtcnn:
    """The three-stage cascade. :meth:`detect` finds faces from ``min_face`` pixels up in a whole
    image; :meth:`verify` re-scores given candidate boxes with RNet and ONet only (cheap: no pyramid).
    Each network runs on one core (the video tracker detects in one thread while it fits landmarks in
    another)."""

    def __init__(self, thresholds: tuple[float, float, float] = THRESHOLDS) -> None:
        import openvino as ov

        folder = weights_dir()
        self._core = ov.Core()
        self._models = [
            ov.convert_model(io.BytesIO(_graph(_load_arrays(folder / f"{name}.lz4"), name, stage)))
            for stage, name in enumerate(("pnet", "rnet", "onet"))
        ]
        self._compiled: dict[tuple[int, ...], object] = {}
        self._local = threading.local()  # each thread's inference requests, freed with the thread
        self._lock = threading.Lock()
        self.thresholds = thresholds

    def detect(self, image_rgb: np.ndarray, min_face: float = 24.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes xyxy [N, 4], scores [N] and five points [N, 5, 2] (eyes, nose, mouth corners) of the
        faces in an RGB uint8 image, from ``min_face`` pixels wide up."""
        return self.verify(image_rgb, self._propose(image_rgb, min_face))

    def verify(
        self, image_rgb: np.ndarray, boxes: np.ndarray, thresholds: tuple[float, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RNet then ONet on candidate boxes [N, 4]: the faces among them, refined (as :meth:`detect`)."""
        rnet_t, onet_t = thresholds or self.thresholds[1:]
        boxes = _square(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
        if len(boxes):
            regression, score = self._run(1, _patches(image_rgb, boxes, 24))
            keep = score > rnet_t
            boxes, score, regression = boxes[keep], score[keep], regression[keep]
            keep = nms(boxes, score, 0.7)
            boxes = _square(_apply_regression(boxes[keep], regression[keep]))
        if not len(boxes):
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        regression, points, score = self._run(2, _patches(image_rgb, boxes, 48))
        keep = score > onet_t
        boxes, score, regression, points = boxes[keep], score[keep], regression[keep], points[keep]
        size = (boxes[:, 2:4] - boxes[:, :2])[:, None]
        points = boxes[:, None, :2] + np.stack([points[:, :5], points[:, 5:]], axis=2) * size
        boxes = _apply_regression(boxes, regression)
        keep = nms(boxes, score, 0.7, by_min=True)
        return boxes[keep], score[keep].astype(np.float64), points[keep]

    def _run(self, net: int, images: np.ndarray) -> list[np.ndarray]:
        """One network's outputs, the face probability last (the softmax's second column). PNet is
        compiled once per pyramid level's size (a video's levels repeat; OpenVINO runs a static shape
        several times faster than a dynamic one), RNet and ONet once with a dynamic batch. Each thread
        has its own inference requests (the video tracker detects and rescues in two threads)."""
        x = np.ascontiguousarray(images[None] if images.ndim == 3 else images)
        key = (net, *x.shape[1:3]) if net == 0 else (net,)
        requests = self._local.__dict__.setdefault("requests", {})
        request = requests.get(key)
        if request is None:
            with self._lock:
                if key not in self._compiled:
                    model = self._models[net].clone()
                    model.reshape({0: [1, *x.shape[1:]] if net == 0 else [-1, *x.shape[1:]]})
                    config = {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"}
                    self._compiled[key] = self._core.compile_model(model, "CPU", config)
                request = requests[key] = self._compiled[key].create_infer_request()
        outputs = [np.array(o) for o in request.infer({0: x}).values()]
        return [*outputs[:-1], outputs[-1][:, 1]]

    def _propose(self, image: np.ndarray, min_face: float) -> np.ndarray:
        """PNet over the pyramid whose first level shows a ``min_face`` face at 12 pixels; each level is
        resized from the one before (resizing a 4K frame to every level costs more than PNet)."""
        height, width = image.shape[:2]
        scale, level = _CELL / min_face, image
        found = []
        while min(height, width) * scale >= _CELL:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            upscale = size[0] > level.shape[1]
            level = cv2.resize(level, size, interpolation=cv2.INTER_LINEAR if upscale else cv2.INTER_AREA)
            regression, score = self._run(0, level)
            ys, xs = np.nonzero(score[0] > self.thresholds[0])
            if len(ys):
                origin = np.stack([xs, ys, xs, ys], axis=1) * _STRIDE + np.array([0, 0, _CELL, _CELL])
                boxes, scores = origin / scale, score[0, ys, xs]
                keep = nms(boxes, scores, 0.5)
                offsets = regression[0][:, ys, xs].T
                found.append(np.concatenate([_apply_regression(boxes[keep], offsets[keep]), scores[keep, None]], 1))
            scale *= PYRAMID_FACTOR
        if not found:
            return np.zeros((0, 4))
        candidates = np.concatenate(found)
        return candidates[nms(candidates[:, :4], candidates[:, 4], 0.7), :4]
