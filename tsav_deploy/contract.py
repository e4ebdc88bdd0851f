"""The model contract and preprocessing constants (docs/model-contract.md, docs/preprocessing.md), in one place.

Everything that training and inference must agree on lives here and is copied into every checkpoint
and export manifest, so a file always says how its inputs were made.
"""

from __future__ import annotations

# --- model contract -------------------------------------------------------------------------------
CLIP_FRAMES = 8
CLIP_STEP_FRAMES = 6  # the clip of frame i: frames i - 42, i - 36, ..., i (by index, at every frame rate)
CROP_SIZE = 112
CLIP_SHAPE = (4, CLIP_FRAMES, CROP_SIZE, CROP_SIZE)  # R, G, B, mask; oldest frame first
N_MELS = 64
WINDOW_COLUMNS = 1001  # 10 s of 10 ms hops (the frame's position in them: tsav_deploy.inputs.windows)
SPEC_SHAPE = (1, N_MELS, WINDOW_COLUMNS)
FEATURES = 512
N_OUTPUTS = 17

EXPRESSIONS = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
ACTION_UNITS = ("AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25")
EXPR_SLICE = slice(0, 7)
VA_SLICE = slice(7, 9)
AU_SLICE = slice(9, 17)

# --- video frontend -------------------------------------------------------------------------------
# Kinetics-400 mean/std for RGB (as torchvision's video models), 0.5/0.225 for the landmark mask.
CLIP_MEAN = (0.43216, 0.394666, 0.37645, 0.5)
CLIP_STD = (0.22803, 0.22145, 0.216989, 0.225)
# ArcFace 112x112 five-point template: left eye, right eye, nose tip, left and right mouth corner.
ARCFACE_TEMPLATE = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)
# Mask polylines in drawing order (later on top): (first, last landmark inclusive, closed, gray).
MASK_POLYLINES = (
    (48, 59, True, 255),  # outer mouth
    (17, 21, False, 223),  # left brow
    (22, 26, False, 191),  # right brow
    (36, 41, True, 159),  # left eye
    (42, 47, True, 127),  # right eye
    (28, 30, False, 63),  # nose bridge
    (6, 10, False, 31),  # chin
)

# How a clip frame is made, stored with every checkpoint, export and cache (docs/preprocessing.md):
# frames by index ("authors-index"), YUV decoded with BT.601 as OpenCV 4.x's VideoCapture does
# whatever the stream's tags say, OpenCV 4.x's bicubic warp, and the authors' JPEG files of the crop
# (quality 95, 4:2:0, read back with PIL) and of the mask (gray, quality 100).
CLIP_RULE = "authors-index"
DECODE_COLORSPACE = "bt601"
WARP = "opencv4-bicubic"
CROP_CODEC = "jpeg-q95-420+mask-jpeg-q100"

# --- audio frontend -------------------------------------------------------------------------------
SAMPLE_RATE = 44_100  # the authors' code (the paper's text says 41 kHz)
N_FFT = 1024
WIN_LENGTH = 882  # 20 ms
HOP_LENGTH = 441  # 10 ms -> 100 columns per second
F_MIN = 0.0
F_MAX = SAMPLE_RATE / 2
COLUMNS_PER_SECOND = SAMPLE_RATE / HOP_LENGTH
TOP_DB = 80.0
AMIN = 1e-10
SPEC_MEAN = -14.8  # (dB + 14.8) / 19.895
SPEC_STD = 19.895
# The authors' segment of a frame with s = int(t · 44100): [max(s − 220500, 0), + min(441000, max(s, 882))).
SEGMENT_SAMPLES = 441_000  # 10 s
SEGMENT_LEAD_SAMPLES = 220_500  # 5 s before the frame's sample
MIN_SEGMENT_SAMPLES = WIN_LENGTH  # the authors' floor, int(window_size · sample_rate)
# The authors' WAVs are `ffmpeg -ar 44100 -ac 1` output: 16-bit PCM, stereo downmixed to (L + R) / 2.
WAVE_FORMAT = "s16"
# How the window of a frame is cut, stored with every checkpoint, export and cache: "authors-segment"
# is Aff2CompDataset.__getitem__'s own segment and spectrogram per frame (tsav_deploy.inputs.windows).
WINDOW_RULE = "authors-segment"


def preprocessing_dict() -> dict:
    """The constants above as plain JSON-able data, stored in checkpoints and export manifests."""
    return {
        "clip": {
            "frames": CLIP_FRAMES,
            "step_frames": CLIP_STEP_FRAMES,
            "rule": CLIP_RULE,
            "decode_colorspace": DECODE_COLORSPACE,
            "warp": WARP,
            "crop_codec": CROP_CODEC,
            "size": CROP_SIZE,
            "mean": list(CLIP_MEAN),
            "std": list(CLIP_STD),
            "template": [list(p) for p in ARCFACE_TEMPLATE],
            "mask_polylines": [list(p) for p in MASK_POLYLINES],
        },
        "audio": {
            "sample_rate": SAMPLE_RATE,
            "n_fft": N_FFT,
            "win_length": WIN_LENGTH,
            "hop_length": HOP_LENGTH,
            "n_mels": N_MELS,
            "f_min": F_MIN,
            "f_max": F_MAX,
            "window_columns": WINDOW_COLUMNS,
            "window_rule": WINDOW_RULE,
            "segment_samples": SEGMENT_SAMPLES,
            "segment_lead_samples": SEGMENT_LEAD_SAMPLES,
            "min_segment_samples": MIN_SEGMENT_SAMPLES,
            "wave_format": WAVE_FORMAT,
            "top_db": TOP_DB,
            "mean": SPEC_MEAN,
            "std": SPEC_STD,
        },
        "outputs": {"expressions": list(EXPRESSIONS), "action_units": list(ACTION_UNITS)},
    }


def preprocessing_differences(recorded: object) -> list[str]:
    """What differs between recorded preprocessing constants and this version's, one phrase per
    constant (``"audio.window_rule: none recorded, this version authors-segment"``); empty when equal."""
    current = _json_like(preprocessing_dict())
    recorded = _json_like(recorded) if isinstance(recorded, dict) else {}
    differences = []
    for section, values in current.items():
        theirs = recorded.get(section)
        theirs = theirs if isinstance(theirs, dict) else {}
        for key, value in values.items():
            if theirs.get(key) != value:
                was = "none recorded" if key not in theirs else repr(theirs[key])
                differences.append(f"{section}.{key}: {was}, this version {value!r}")
    return differences


def _json_like(value):
    """Tuples as lists, as a JSON round trip would make them, so stored and live constants compare."""
    if isinstance(value, dict):
        return {str(k): _json_like(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_like(v) for v in value]
    return value
