"""Training samples from the preprocess cache: which (video, frame) pairs, and each one's network input.

- :func:`build_samples` turns annotation tables into sample arrays: each table is cut or padded to its
  video's decoded frame count (Aff-Wild2's files often differ by a few lines), training frames go through
  the paper's filter and must have a face and a target (a label, or a pseudo label that can be drawn);
  validation frames are every annotated frame, unfiltered, as the metric sees them.
- :class:`ClipDataset` builds the clip of a frame from the cached crops with the same frame choice as
  annotation (:func:`tsav_deploy.inputs.clips.clip_frame_indices`), the aural window by annotation's rule
  (``SpecWindows.frame_windows``), the augmentation (flip, HSV jitter) and the pseudo labels. Clips leave the loader as uint8 crops (a
  quarter of the float size to collate and copy) and are normalized on the training device by
  :func:`normalize_batch`, bit-identical to ``normalize_clip`` (it uses a table read off that function).

Every random choice of a training item comes from a generator seeded by (seed, step, position in the
global batch), so a run is reproducible, resumable, and the same whatever the number of processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import torch

from tsav_deploy.contract import CLIP_FRAMES, CROP_SIZE, EXPRESSIONS
from tsav_deploy.inputs.clips import clip_frame_indices, normalize_clip
from tsav_deploy.inputs.windows import SpecWindows
from tsav_deploy.train.cache import CachedVideo, CacheIndex
from tsav_deploy.train.filtering import filter_frames
from tsav_deploy.train.labels import AU_MISSING, EXPR_MISSING, LabelTable, VideoMatch
from tsav_deploy.train.pseudo_labels import DEFAULT_PSEUDO, VAHistograms, pseudo_label_masks, pseudo_targets

# HSV jitter ranges (OpenCV uint8 HSV: hue 0–179, saturation and value 0–255).
HUE_JITTER, SATURATION_JITTER, VALUE_JITTER = 10, 25, 20
_HUE_RANGE = 180


# --- labels -> samples ---------------------------------------------------------------------------------


def fit_to_frames(table: LabelTable, frames: int) -> LabelTable:
    """The table cut or padded (with "unannotated") to ``frames`` rows."""
    n = min(len(table), frames)

    def fit(values: np.ndarray, missing) -> np.ndarray:
        out = np.full((frames, *values.shape[1:]), missing, dtype=values.dtype)
        out[:n] = values[:n]
        return out

    return replace(table, va=fit(table.va, np.nan), expr=fit(table.expr, EXPR_MISSING), au=fit(table.au, AU_MISSING))


def match_cache(tables: dict[str, LabelTable], cache: CacheIndex) -> VideoMatch:
    """Each annotated name's cached video (``<name>`` or ``<name without _left/_right>``)."""
    videos, missing = {}, []
    for name, table in tables.items():
        stem = name if name in cache.videos else table.video_name
        if stem in cache.videos:
            videos[name] = cache.root / "videos" / stem
        else:
            missing.extend(table.files.values())
    return VideoMatch(videos=videos, missing=sorted(missing))


@dataclass
class Samples:
    """Parallel arrays, one row per sample, plus the videos they point into."""

    videos: list[str]  # cached video stems
    video: np.ndarray  # [S] int64 index into ``videos``
    frame: np.ndarray  # [S] int64
    va: np.ndarray  # [S, 2] float32, NaN = none
    expr: np.ndarray  # [S] int64, -1 = none
    au: np.ndarray  # [S, 8] int64, -1 = none
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frame)

    def subset(self, rows: np.ndarray) -> Samples:
        return Samples(
            self.videos, self.video[rows], self.frame[rows], self.va[rows], self.expr[rows], self.au[rows], self.notes
        )

    @classmethod
    def concatenate(cls, parts: list[Samples]) -> Samples:
        """Samples of several splits of one cache (their ``videos`` lists are the cache's, identical)."""
        if any(part.videos != parts[0].videos for part in parts):
            raise ValueError("samples of different caches cannot be concatenated")
        arrays = {
            key: np.concatenate([getattr(part, key) for part in parts])
            for key in ("video", "frame", "va", "expr", "au")
        }
        return cls(videos=parts[0].videos, notes=[note for part in parts for note in part.notes], **arrays)


def fitted_tables(tables: dict[str, LabelTable], cache: CacheIndex) -> dict[str, tuple[str, LabelTable]]:
    """``{name: (video stem, table fitted to the video's frame count)}``; every name must have a video."""
    match = match_cache(tables, cache)
    match.raise_if_missing()
    return {
        name: (match.videos[name].name, fit_to_frames(table, cache.videos[match.videos[name].name]["frames"]))
        for name, table in tables.items()
    }


def build_samples(
    tables: dict[str, LabelTable],
    cache: CacheIndex,
    *,
    training: bool,
    histograms: VAHistograms | None = None,
    pseudo: tuple[str, ...] = DEFAULT_PSEUDO,
) -> Samples:
    """Samples of one split (see the module docstring). ``histograms`` is needed for training."""
    videos = sorted(cache.videos)
    position = {v: i for i, v in enumerate(videos)}
    columns: dict[str, list[np.ndarray]] = {"video": [], "frame": [], "va": [], "expr": [], "au": []}
    notes = []
    for name, (stem, table) in fitted_tables(tables, cache).items():
        if name != stem:
            # The cache holds the main person only; a _left/_right table may describe someone else.
            notes.append(
                f"{name}: second-person annotations (_left/_right) are not used; the cache holds the main person"
            )
            continue
        labelled = table.has_valence | table.has_arousal | table.has_expr | table.has_au
        if training:
            keep = filter_frames(table).keep
            face = np.load(cache.root / "videos" / stem / "face.npy")
            pseudo_any = np.zeros(len(table), bool)
            for mask in pseudo_label_masks(table.va, table.expr, histograms, pseudo).values():
                pseudo_any |= mask
            # A frame without a face would teach the visual stream that black clips carry labels.
            rows = np.flatnonzero(keep & face & (labelled | pseudo_any))
        else:
            rows = np.flatnonzero(labelled)
        columns["video"].append(np.full(len(rows), position[stem], np.int64))
        columns["frame"].append(rows.astype(np.int64))
        columns["va"].append(table.va[rows])
        columns["expr"].append(table.expr[rows])
        columns["au"].append(table.au[rows])
    empty = {
        "video": np.zeros(0, np.int64),
        "frame": np.zeros(0, np.int64),
        "va": np.zeros((0, 2), np.float32),
        "expr": np.zeros(0, np.int64),
        "au": np.zeros((0, 8), np.int64),
    }
    arrays = {key: np.concatenate([empty[key], *parts]) for key, parts in columns.items()}
    return Samples(videos=videos, notes=notes, **arrays)


def fit_histograms(tables: dict[str, LabelTable], cache: CacheIndex) -> VAHistograms:
    """Pseudo-label histograms over the kept frames of the (fitted) training tables."""
    fitted = [table for _, table in fitted_tables(tables, cache).values()]
    return VAHistograms.from_tables(fitted, [filter_frames(table).keep for table in fitted])


# --- augmentation --------------------------------------------------------------------------------------


def hsv_jitter(rgb: np.ndarray, hue: int, saturation: int, value: int) -> np.ndarray:
    """Shift hue (cyclic, OpenCV's 0–179), saturation and value (clipped to 0–255) of RGB uint8 [..., 3]."""
    levels = np.arange(256)
    lut = np.stack(
        [
            np.where(levels < _HUE_RANGE, (levels + hue) % _HUE_RANGE, levels),
            np.clip(levels + saturation, 0, 255),
            np.clip(levels + value, 0, 255),
        ],
        axis=-1,
    ).astype(np.uint8)[:, None, :]
    image = np.ascontiguousarray(rgb).reshape(-1, rgb.shape[-2], 3)
    shifted = cv2.LUT(cv2.cvtColor(image, cv2.COLOR_RGB2HSV), lut)
    return cv2.cvtColor(shifted, cv2.COLOR_HSV2RGB).reshape(rgb.shape)


def augment_clip(rgb: np.ndarray, mask: np.ndarray, present: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The paper's augmentation of a clip's uint8 RGB [8, 112, 112, 3] and mask [8, 112, 112]: one HSV
    jitter for the clip's RGB, and a horizontal flip of the whole clip (RGB and mask together) with
    probability ½. Returns the crops [8, 112, 112, 4]. Absent frames stay black: they stand for
    "no picture", not a dark one."""
    hue = int(rng.integers(-HUE_JITTER, HUE_JITTER + 1))
    saturation = int(rng.integers(-SATURATION_JITTER, SATURATION_JITTER + 1))
    value = int(rng.integers(-VALUE_JITTER, VALUE_JITTER + 1))
    rgb = hsv_jitter(rgb, hue, saturation, value)
    rgb[~present] = 0
    crops = stack_crops(rgb, mask)
    if rng.random() < 0.5:  # jitter is per pixel, so flipping after it equals flipping before
        # Frames stacked vertically: flipping the image's columns mirrors every frame at once.
        crops = cv2.flip(crops.reshape(-1, CROP_SIZE, 4), 1).reshape(crops.shape)
    return crops


def stack_crops(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGB [8, 112, 112, 3] and mask [8, 112, 112] as RGB + mask crops [8, 112, 112, 4]."""
    # cv2.merge interleaves channels ~4× faster than numpy's concatenate along the last axis.
    merged = cv2.merge([rgb.reshape(-1, CROP_SIZE, 3), mask.reshape(-1, CROP_SIZE)])
    return merged.reshape(*mask.shape, 4)


# --- the dataset ---------------------------------------------------------------------------------------


def item_rng(seed: int, step: int, position: int) -> np.random.Generator:
    """The generator of one training item: independent of process layout and worker scheduling."""
    return np.random.default_rng((seed, step, position))


def normalization_table() -> torch.Tensor:
    """``[4, 256]`` float32: what ``normalize_clip`` makes of each uint8 level in each channel."""
    levels = (np.arange(CROP_SIZE * CROP_SIZE) % 256).astype(np.uint8).reshape(CROP_SIZE, CROP_SIZE)
    crops = np.broadcast_to(levels[None, :, :, None], (CLIP_FRAMES, CROP_SIZE, CROP_SIZE, 4))
    clip = normalize_clip(np.ascontiguousarray(crops))
    return torch.from_numpy(clip[:, 0].reshape(4, -1)[:, :256].copy())


def normalize_batch(crops: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """uint8 crops ``[B, 8, 112, 112, 4]`` -> normalized clips ``[B, 4, 8, 112, 112]`` float32, on
    ``crops``' device (``table`` from :func:`normalization_table`, on the same device)."""
    index = crops.permute(0, 4, 1, 2, 3).long()
    index += torch.arange(4, device=crops.device).view(1, 4, 1, 1, 1) * 256
    return table.reshape(-1)[index]


class ClipDataset(torch.utils.data.Dataset):
    """Items are dicts of numpy arrays: ``crops [8, 112, 112, 4]`` uint8 (RGB + mask, the clip before
    normalization: see :func:`normalize_batch`), ``spec [1, 64, 1001]``, ``va [2]``
    (NaN = no target), ``expression [7]`` (probabilities, NaN row = no target), ``au [8]`` (−1 = none),
    ``sample`` (row in :class:`Samples`).

    A key is a sample row (no augmentation, annotated labels only: validation) or a tuple
    ``(row, step, position)`` (training: augmentation and pseudo labels from :func:`item_rng`).
    """

    def __init__(
        self,
        cache: CacheIndex,
        samples: Samples,
        *,
        histograms: VAHistograms | None = None,
        pseudo: tuple[str, ...] = DEFAULT_PSEUDO,
        seed: int = 0,
    ):
        self.cache = cache
        self.samples = samples
        self.histograms = histograms
        self.pseudo = pseudo
        self.seed = seed
        self._videos: dict[int, CachedVideo] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getstate__(self) -> dict:
        # Worker processes started by spawn open their own memory maps instead of copying the data.
        return {**self.__dict__, "_videos": {}}

    def video(self, index: int) -> CachedVideo:
        if index not in self._videos:
            self._videos[index] = self.cache.open(self.samples.videos[index])
        return self._videos[index]

    def frames(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A sample's clip frames from the cache: RGB [8, 112, 112, 3], mask [8, 112, 112] (uint8, zeros
        where black) and which of the 8 are present."""
        video = self.video(int(self.samples.video[row]))
        crops = np.zeros((CLIP_FRAMES, CROP_SIZE, CROP_SIZE, 4), np.uint8)
        present = np.zeros(CLIP_FRAMES, bool)
        for k, index in enumerate(clip_frame_indices(int(self.samples.frame[row]))):
            present[k] = index is not None and video.read_into(index, crops[k])
        return np.ascontiguousarray(crops[..., :3]), np.ascontiguousarray(crops[..., 3]), present

    def __getitem__(self, key: int | tuple[int, int, int]) -> dict[str, np.ndarray]:
        training = isinstance(key, tuple)
        row = int(key[0] if training else key)
        samples = self.samples
        rgb, mask, present = self.frames(row)
        va, expr = samples.va[row : row + 1], samples.expr[row : row + 1]
        if training:
            rng = item_rng(self.seed, key[1], key[2])
            crops = augment_clip(rgb, mask, present, rng)
            va_target, expr_target = pseudo_targets(va, expr, self.histograms, rng, self.pseudo)
        else:
            crops = stack_crops(rgb, mask)
            va_target = va.astype(np.float32)
            expr_target = np.full((1, len(EXPRESSIONS)), np.nan, np.float32)
            if expr[0] >= 0:
                expr_target[0] = np.eye(len(EXPRESSIONS), dtype=np.float32)[expr[0]]
        video = int(samples.video[row])
        time = self.video(video).times[int(samples.frame[row])]
        return {
            "crops": crops,
            # Samples are drawn at random, so windows rarely share columns: no cache is kept per video.
            "spec": SpecWindows(self.video(video).wave).frame_windows([time])[0],
            "va": va_target[0].astype(np.float32),
            "expression": expr_target[0].astype(np.float32),
            "au": samples.au[row].copy(),
            "sample": np.int64(row),
        }


# --- which samples each step uses ------------------------------------------------------------------------


class StepSchedule:
    """The global batch of every step, and each process's micro-batches of it.

    Samples are visited in a fresh permutation per epoch (seeded), step ``s`` taking positions
    ``[s·batch, (s+1)·batch)`` of the concatenated permutations. The batch is cut into micro-batches;
    micro-batch ``j`` goes to rank ``j mod world``, so 1 process and N processes compute the same
    micro-batches, and the averaged gradient is the same.
    """

    def __init__(self, samples: int, batch: int, micro_batch: int, *, seed: int = 0, rank: int = 0, world: int = 1):
        if samples <= 0:
            raise ValueError("no training samples")
        if batch % micro_batch or (batch // micro_batch) % world:
            raise ValueError(
                f"the batch ({batch}) must split into micro-batches of {micro_batch} whose number is a multiple of "
                f"the {world} process(es)"
            )
        self.samples, self.batch, self.micro_batch = samples, batch, micro_batch
        self.seed, self.rank, self.world = seed, rank, world
        self._epochs: dict[int, np.ndarray] = {}

    @property
    def micro_batches_per_rank(self) -> int:
        return self.batch // self.micro_batch // self.world

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._epochs:
            self._epochs = {epoch: np.random.default_rng((self.seed, epoch, 0x5EED)).permutation(self.samples)}
        return self._epochs[epoch]

    def step_rows(self, step: int) -> np.ndarray:
        """The sample rows of step ``step``'s global batch, in order."""
        positions = np.arange(step * self.batch, (step + 1) * self.batch)
        epochs, offsets = np.divmod(positions, self.samples)
        return np.array([self._permutation(int(e))[o] for e, o in zip(epochs, offsets)], np.int64)

    def micro_batches(self, step: int) -> list[list[tuple[int, int, int]]]:
        """This rank's micro-batches of ``step`` as dataset keys ``(row, step, position)``."""
        rows = self.step_rows(step)
        keys = [(int(row), step, position) for position, row in enumerate(rows)]
        micro = [keys[j : j + self.micro_batch] for j in range(0, self.batch, self.micro_batch)]
        return micro[self.rank :: self.world]

    def batches(self, first_step: int, last_step: int):
        """Micro-batches of steps ``first_step`` .. ``last_step − 1`` in order (a DataLoader batch_sampler)."""
        for step in range(first_step, last_step):
            yield from self.micro_batches(step)
