"""A small synthetic Aff-Wild2-shaped dataset: real H.264/AAC video files with real faces and sound, and
ABAW annotation folders whose labels can be learnt from picture and sound (tests and ``tsav demo``).

The faces are photographs that installed dependencies ship (scikit-image's astronaut; insightface's
sample images where present), animated (shift, scale) so that detection, tracking and alignment do real
work. Every label is drawn onto the picture or into the sound, frame by frame:

- valence: the face's brightness (×(1 + 0.45·v)); expressions bias it (Happiness up, Sadness down);
- arousal: loudness and pitch of a tone (+30 dB and +2 octaves from −1 to 1), per video around its own level;
- expression: a colour tint per segment (Neutral none, Happiness yellow, Sadness blue, Surprise green);
- AUs: black dots at eight fixed places on the face (forehead and cheeks), on while the AU is active.

Annotation patterns exercise the label code: a training video without valence/arousal (its frames get
pseudo valence), unannotated stretches (−5/−1), a VA file a few lines short of the video, and both split
folder names (``Train_Set`` and ``Training_Set``).
"""

from __future__ import annotations

import importlib.util
import pathlib
from dataclasses import dataclass, field
from fractions import Fraction

import av
import cv2
import numpy as np

from tsav_deploy.atomic import atomic_path
from tsav_deploy.contract import ACTION_UNITS, EXPRESSIONS, SAMPLE_RATE
from tsav_deploy.train.labels import HEADERS, TASK_FOLDERS

WIDTH, HEIGHT = 320, 240
FPS = 30
SPRITE = 240  # side of the square face picture pasted into each frame
SPRITE_FACE = 100  # face box side inside the sprite: dlib's HOG window needs about 80 px
# Expressions used and their multiplicative RGB tints (hues far apart: HSV jitter moves hue by ±20°).
TINTS = {
    EXPRESSIONS.index("Neutral"): (1.0, 1.0, 1.0),
    EXPRESSIONS.index("Happiness"): (1.0, 0.85, 0.45),
    EXPRESSIONS.index("Sadness"): (0.55, 0.7, 1.0),
    EXPRESSIONS.index("Surprise"): (0.55, 1.0, 0.55),
}
# Valence bias per expression, consistent with the paper's filter rules (happy ≥ 0, sad ≤ 0).
VALENCE_BIAS = {0: 0.0, 4: 0.45, 5: -0.45, 6: 0.2}
# AU dot centres relative to the face centre, in face sizes (forehead row, then cheeks).
AU_DOTS = (
    (-0.3, -0.5),
    (-0.1, -0.5),
    (0.1, -0.5),
    (0.3, -0.5),
    (-0.42, 0.12),
    (0.42, 0.12),
    (-0.38, 0.35),
    (0.38, 0.35),
)
AU_RATE = 0.35  # probability that an AU is on in a segment
VALIDATION_FOLDERS = {"VA": "Validation_Set", "EXPR": "Validation_Set", "AU": "Validation_Set"}
TRAIN_FOLDERS = {"VA": "Train_Set", "EXPR": "Train_Set", "AU": "Training_Set"}


@dataclass
class SyntheticVideo:
    name: str
    path: pathlib.Path
    split: str  # "train" or "validation"
    va: np.ndarray  # [N, 2] float32, the values drawn into the video (before annotation gaps)
    expr: np.ndarray  # [N] int64
    au: np.ndarray  # [N, 8] int64


@dataclass
class SyntheticDataset:
    root: pathlib.Path
    videos_dir: pathlib.Path
    annotations_dir: pathlib.Path
    videos: list[SyntheticVideo] = field(default_factory=list)


# --- faces ---------------------------------------------------------------------------------------------


def _insightface_images() -> pathlib.Path | None:
    spec = importlib.util.find_spec("insightface")
    if spec is None or spec.origin is None:
        return None
    folder = pathlib.Path(spec.origin).parent / "data" / "images"
    return folder if folder.is_dir() else None


def face_sprites() -> list[np.ndarray]:
    """Square RGB pictures (SPRITE × SPRITE) with one face of side SPRITE_FACE at the centre.

    The face boxes were found with the dlib HOG detector on the shipped pictures.
    """
    from skimage.data import astronaut

    sources = [(astronaut(), (176, 75, 272, 171))]
    folder = _insightface_images()
    if folder is not None:
        for name, box in (
            ("t1.jpg", (453, 293, 569, 409)),
            ("t1.jpg", (64, 280, 177, 393)),
            ("Tom_Hanks_54745.png", (9, 26, 97, 114)),
        ):
            image = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
            if image is not None:
                sources.append((image[:, :, ::-1], box))
    return [_sprite(image, box) for image, box in sources]


def _sprite(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    side = (x1 - x0 + y1 - y0) / 2 * SPRITE / SPRITE_FACE
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    scale = SPRITE / side
    # Similarity taking the face centre to the sprite centre; border pixels repeat outside the photo.
    matrix = np.array([[scale, 0, SPRITE / 2 - scale * cx], [0, scale, SPRITE / 2 - scale * cy]])
    return cv2.warpAffine(image, matrix, (SPRITE, SPRITE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


# --- labels --------------------------------------------------------------------------------------------


def _segments(n: int, rng: np.random.Generator, mean_frames: int) -> list[slice]:
    bounds = [0]
    while bounds[-1] < n:
        bounds.append(min(n, bounds[-1] + int(rng.integers(mean_frames * 2 // 3, mean_frames * 4 // 3 + 1))))
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def draw_labels(n: int, arousal_level: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame (va [N, 2], expr [N], au [N, 8]) of one video."""
    t = np.arange(n) / FPS
    expr = np.empty(n, np.int64)
    for segment in _segments(n, rng, FPS * 4 // 3):
        expr[segment] = rng.choice(list(TINTS))
    phase = rng.uniform(0, 2 * np.pi)
    valence = np.array([VALENCE_BIAS[e] for e in expr]) + 0.35 * np.sin(2 * np.pi * t / 2.5 + phase)
    arousal = arousal_level + 0.15 * np.sin(2 * np.pi * t / 4.0 + rng.uniform(0, 2 * np.pi))
    va = np.clip(np.stack([valence, arousal], 1), -0.95, 0.95).astype(np.float32)
    au = np.zeros((n, len(ACTION_UNITS)), np.int64)
    for segment in _segments(n, rng, FPS):
        au[segment] = rng.random(len(ACTION_UNITS)) < AU_RATE
    return va, expr, au


# --- picture and sound ---------------------------------------------------------------------------------


def render_frame(sprite: np.ndarray, k: int, n: int, va: np.ndarray, expr: int, au: np.ndarray) -> np.ndarray:
    """One RGB frame: the face tinted by expression, lit by valence, dotted by AUs, drifting in the frame."""
    face = sprite.astype(np.float32)
    centre = SPRITE / 2
    for (dx, dy), on in zip(AU_DOTS, au):
        if on:
            cv2.circle(
                face,
                (round(centre + dx * SPRITE_FACE), round(centre + dy * SPRITE_FACE)),
                5,
                (0, 0, 0),
                -1,
                cv2.LINE_AA,
            )
    face *= np.asarray(TINTS[expr], np.float32) * (1.0 + 0.45 * float(va[0]))
    phase = 2 * np.pi * k / max(n, 1)
    scale = 1.0 + 0.06 * np.sin(phase * 1.5)
    shift = (WIDTH / 2 + 18 * np.sin(phase), HEIGHT / 2 + 6 * np.cos(phase * 2))
    matrix = np.array([[scale, 0, shift[0] - scale * centre], [0, scale, shift[1] - scale * centre]])
    frame = cv2.warpAffine(face, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderValue=(90, 90, 90))
    return np.clip(frame, 0, 255).astype(np.uint8)


def render_sound(arousal: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Mono float32 at 44.1 kHz: a tone whose loudness and pitch follow arousal frame by frame, plus hiss."""
    samples = int(round(seconds * SAMPLE_RATE))
    frame_of_sample = np.minimum((np.arange(samples) * FPS) // SAMPLE_RATE, len(arousal) - 1)
    a = arousal[frame_of_sample].astype(np.float64)
    amplitude = 0.3 * 10.0 ** ((a - 1.0) * 0.75)  # 30 dB from a = −1 to 1
    frequency = 220.0 * 2.0 ** (a + 1.0)
    phase = 2 * np.pi * np.cumsum(frequency) / SAMPLE_RATE
    wave = amplitude * np.sin(phase) + 0.003 * rng.standard_normal(samples)
    return wave.astype(np.float32)


def write_video(path: pathlib.Path, frames: list[np.ndarray], sound: np.ndarray) -> None:
    """H.264 (yuv420p) + AAC mono 44.1 kHz in an MP4, written under a temporary name, then renamed."""
    with atomic_path(path) as tmp, av.open(str(tmp), "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": "18", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        audio = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for rgb in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(video.encode(None))
        chunk = 1024
        for start in range(0, len(sound), chunk):
            piece = av.AudioFrame.from_ndarray(sound[None, start : start + chunk], format="flt", layout="mono")
            piece.sample_rate, piece.pts, piece.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
            container.mux(audio.encode(piece))
        container.mux(audio.encode(None))


# --- annotation files ----------------------------------------------------------------------------------


def _write_task(path: pathlib.Path, task: str, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if task == "VA":
        rows = [f"{v:.3f},{a:.3f}" for v, a in values]
    elif task == "EXPR":
        rows = [str(int(e)) for e in values]
    else:
        rows = [",".join(str(int(x)) for x in row) for row in values]
    path.write_text("\n".join([HEADERS[task], *rows]) + "\n")


def write_annotations(root: pathlib.Path, video: SyntheticVideo, index: int) -> None:
    """The three ABAW files of one video, with the gaps described in the module docstring."""
    folders = TRAIN_FOLDERS if video.split == "train" else VALIDATION_FOLDERS
    va, expr, au = video.va.copy(), video.expr.copy(), video.au.copy()
    if video.split == "train":
        expr[: FPS // 3] = -1  # an unannotated stretch at the start
        au[-FPS // 3 :] = -1
        va = va[:-3]  # annotation a few lines shorter than the video: padded with "unannotated"
    for task, values in (("VA", va), ("EXPR", expr), ("AU", au)):
        if task == "VA" and video.split == "train" and index == 1:
            continue  # expression-only video: its frames get pseudo valence
        _write_task(root / TASK_FOLDERS[task] / folders[task] / f"{video.name}.txt", task, values)


def make_dataset(
    root: str | pathlib.Path, *, videos: int = 6, seconds: float = 4.0, validation: int = 2, seed: int = 0
) -> SyntheticDataset:
    """Write ``videos`` MP4 files (the last ``validation`` of them form the validation split) to
    ``root/videos`` and their ABAW annotations to ``root/annotations``; returns what was drawn."""
    if not 0 < validation < videos:
        raise ValueError("need at least one training and one validation video")
    root = pathlib.Path(root)
    rng = np.random.default_rng(seed)
    sprites = face_sprites()
    n = int(round(seconds * FPS))
    # Arousal levels spread over the range, so that each split sees both quiet and loud videos.
    train_levels = np.linspace(-0.6, 0.6, videos - validation)
    levels = np.concatenate([rng.permutation(train_levels), np.linspace(-0.45, 0.45, validation)])
    dataset = SyntheticDataset(root=root, videos_dir=root / "videos", annotations_dir=root / "annotations")
    for index in range(videos):
        name = f"synth_{index:02d}"
        va, expr, au = draw_labels(n, float(levels[index]), rng)
        sprite = sprites[index % len(sprites)]
        frames = [render_frame(sprite, k, n, va[k], int(expr[k]), au[k]) for k in range(n)]
        path = dataset.videos_dir / f"{name}.mp4"
        write_video(path, frames, render_sound(va[:, 1], seconds, rng))
        video = SyntheticVideo(name, path, "train" if index < videos - validation else "validation", va, expr, au)
        write_annotations(dataset.annotations_dir, video, index)
        dataset.videos.append(video)
    return dataset
