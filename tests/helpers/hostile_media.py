"""A corpus of hostile inputs made from a real recording: the files a batch meets in the wild
(damaged, truncated, mislabelled, degenerate). Each case is a file (or folder) on disk; the tests
check that tsav annotates it or refuses it in one line, and never takes the batch down."""

from __future__ import annotations

import pathlib

import av
import numpy as np

SOURCE = "webcam_man_mp3.mp4"  # 72 frames, 640x360 H.264 with MP3 audio; its index (moov) is at the end
SOURCE_SECONDS = 1.0
PHOTO = "single_face.jpg"


def _flip_bits(data: bytes, offset: int, count: int, seed: int) -> bytes:
    """XOR ``count`` random bytes with random non-zero masks from ``offset`` on."""
    rng = np.random.default_rng(seed)
    damaged = bytearray(data)
    for position in offset + rng.choice(min(4096, len(data) - offset), size=count, replace=False):
        damaged[position] ^= int(rng.integers(1, 256))
    return bytes(damaged)


def _zero(data: bytes, start: int, stop: int) -> bytes:
    return data[:start] + bytes(stop - start) + data[stop:]


def _atom(data: bytes, name: bytes) -> tuple[int, int]:
    """Byte range of a top-level MP4 atom (size field included)."""
    start = data.index(name) - 4
    return start, start + int.from_bytes(data[start : start + 4], "big")


def encode(path: pathlib.Path, images: list[np.ndarray], *, fps: int = 25, rotation: int | None = None) -> None:
    """H.264 in MP4, or a GIF when ``path`` ends in .gif."""
    gif = path.suffix == ".gif"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("gif" if gif else "libx264", rate=fps)
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = "rgb8" if gif else "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for image in images:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())


def remux(source: pathlib.Path, target: pathlib.Path, options: dict[str, str], until_s: float = float("inf")) -> None:
    """Copy every stream's packets before ``until_s`` into a new container (no re-encoding: the
    source's first frame is a key frame, so the copy decodes)."""
    with av.open(str(source)) as inp, av.open(str(target), "w", options=options) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        for packet in inp.demux(*[inp.streams[i] for i in streams]):
            if packet.dts is not None and packet.pts is not None and packet.pts * packet.time_base < until_s:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)


def source_frames(media_dir: pathlib.Path, count: int, step: int = 4) -> list[np.ndarray]:
    with av.open(str(media_dir / SOURCE)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return frames[: count * step : step]


def build_corpus(media_dir: pathlib.Path, folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """Every hostile case by name. Files the tests must not break on; which of them annotate and
    which are refused is for the pipeline to decide, as long as it says so in one line."""
    folder.mkdir(parents=True, exist_ok=True)
    # The first second of the recording, as the camera wrote it: small files keep 40 runs quick.
    source = folder / "source.tmp.mp4"
    remux(media_dir / SOURCE, source, {}, until_s=SOURCE_SECONDS)
    data = source.read_bytes()
    cases: dict[str, pathlib.Path] = {}

    def put(name: str, content: bytes) -> None:
        path = folder / name
        path.write_bytes(content)
        cases[path.stem] = path

    size = len(data)
    for k, fraction in enumerate((0.0005, 0.1, 0.3, 0.5, 0.7, 0.9, 0.985, 0.995)):
        put(f"bitflip{k}.mp4", _flip_bits(data, int(size * fraction), 24, seed=k))
    for k, fraction in enumerate((0.001, 0.02, 0.25, 0.5, 0.75, 0.97, 0.99, 0.999)):
        put(f"truncated{k}.mp4", data[: int(size * fraction)])
    faststart = folder / "faststart.tmp.mp4"  # the index first, as web-ready files have it
    remux(source, faststart, {"movflags": "faststart"})
    front = faststart.read_bytes()
    faststart.unlink()
    for k, fraction in enumerate((0.02, 0.3, 0.6, 0.95)):
        put(f"truncated_faststart{k}.mp4", front[: int(len(front) * fraction)])
    put("zeroed_header.mp4", _zero(data, 0, 4096))
    put("zeroed_index.mp4", _zero(data, *_atom(data, b"moov")))
    put("photo_renamed.mp4", (media_dir / PHOTO).read_bytes())

    frames = source_frames(media_dir, 10)
    small = [f[::4, ::4] for f in frames]  # GIFs are palette frames: keep it small
    for name, images, options in (
        ("animated.gif", small, {"fps": 10}),
        ("one_frame.mp4", frames[:1], {}),
        ("tiny_16x8.mp4", [np.ascontiguousarray(f[:8, :16]) for f in frames], {}),
        # stored sideways as a phone stores it, shown upright by the display matrix
        ("rotated_90.mp4", [np.ascontiguousarray(np.rot90(f, -1)) for f in frames], {"rotation": 90}),
    ):
        encode(folder / name, images, **options)
        cases[pathlib.Path(name).stem] = folder / name
    odd = folder / "ein Gespräch über Ärger – 面談.mp4"
    source.rename(odd)
    cases["odd_name"] = odd
    directory = folder / "a_folder.mp4"
    directory.mkdir()
    cases["folder"] = directory
    return cases


def decoded_frames(path: pathlib.Path) -> int | None:
    """How many video frames plain PyAV decodes from ``path`` (an independent count: no timestamp
    repair, no orientation, no probe), skipping packets that fail; None where it cannot open a video
    at all. FFmpeg's threaded decoding, as the ffmpeg command line uses it: on a damaged stream it
    loses the frames in flight around a bad packet, which a single-threaded decoder may keep."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError):
        return None
    count = 0
    with container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for packet in container.demux(stream):
                try:
                    count += len(stream.codec_context.decode(packet if packet.size else None))
                except av.FFmpegError:
                    continue
        except av.FFmpegError:
            pass
        try:
            count += len(stream.codec_context.decode(None))
        except av.FFmpegError:
            pass
    return count
