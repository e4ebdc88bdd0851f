"""tsav_deploy.media on the shared recordings and on small files written here with PyAV."""

from __future__ import annotations

import gc
import weakref
from fractions import Fraction

import av
import numpy as np
import pytest

from tsav_deploy import media
from tsav_deploy.contract import SAMPLE_RATE
from tsav_deploy.errors import MediaError

# What decodes from each shared recording (FFmpeg's decoders are deterministic about this).
RECORDINGS = {
    "pexels_woman_silent_audio.mp4": dict(frames=472, size=(640, 360), codec="h264", rate=48000),
    "webcam_man_mp3.mp4": dict(frames=72, size=(640, 360), codec="h264", rate=44100),
    "face_then_cartoon_hevc.mov": dict(frames=169, size=(960, 540), codec="hevc", rate=44100),
    "cartoon_no_face.mp4": dict(frames=95, size=(960, 540), codec="h264", rate=44100),
    "talking_head_vfr.mp4": dict(frames=135, size=(700, 700), codec="h264", rate=44100),
    "stage_and_audience.mp4": dict(frames=275, size=(640, 360), codec="h264", rate=44100),
}


@pytest.fixture(scope="module")
def decoded(media_dir):
    """Each recording probed, decoded and its audio read once for the whole module."""
    out = {}
    for name in RECORDINGS:
        path = media_dir / name
        info = media.probe(path)
        with media.iter_frames(path) as frames:
            times, shapes, contiguous, refs = [], set(), True, []
            for frame in frames:
                times.append(frame.time)
                shapes.add(frame.rgb.shape)
                contiguous &= frame.rgb.flags.c_contiguous and frame.rgb.dtype == np.uint8
                refs.append(weakref.ref(frame.rgb))
            del frame
            gc.collect()
            alive = sum(ref() is not None for ref in refs)
            warnings = list(frames.warnings)
        audio, audio_warnings = media.read_audio(path, duration_s=info.duration_s)
        out[name] = dict(
            info=info,
            times=np.array(times),
            shapes=shapes,
            contiguous=contiguous,
            warnings=warnings,
            alive=alive,
            audio=audio,
            audio_warnings=audio_warnings,
        )
    return out


# --- the shared recordings ------------------------------------------------------------------------


@pytest.mark.parametrize("name", RECORDINGS)
def test_every_frame_decodes_with_increasing_time(decoded, name):
    d, want = decoded[name], RECORDINGS[name]
    assert len(d["times"]) == want["frames"]
    assert d["times"][0] == 0.0
    assert np.all(np.diff(d["times"]) > 0)
    assert d["shapes"] == {(want["size"][1], want["size"][0], 3)}
    assert d["contiguous"]
    assert d["warnings"] == []


@pytest.mark.parametrize("name", RECORDINGS)
def test_probe(decoded, name):
    info, want = decoded[name]["info"], RECORDINGS[name]
    assert (info.width, info.height) == want["size"]
    assert info.video_codec == want["codec"]
    assert info.has_audio and info.audio_sample_rate == want["rate"]
    assert info.rotation == 0 and not info.mirrored
    # Decoded frames span the declared duration (to within a frame or two).
    span = decoded[name]["times"][-1] + 1 / info.fps
    assert abs(span - info.duration_s) < 2.5 / info.fps


def test_frame_count_is_an_estimate(decoded):
    # The cartoon's container announces 98 frames; 95 decode, and those are what iter_frames yields.
    assert decoded["cartoon_no_face.mp4"]["info"].frame_count == 98
    assert len(decoded["cartoon_no_face.mp4"]["times"]) == 95


def test_frame_rates(decoded):
    pexels = decoded["pexels_woman_silent_audio.mp4"]
    assert pexels["info"].fps == pytest.approx(24000 / 1001)
    assert np.allclose(np.diff(pexels["times"]), 1001 / 24000)
    vfr = np.diff(decoded["talking_head_vfr.mp4"]["times"])
    assert vfr.min() == pytest.approx(1 / 30) and vfr.max() == pytest.approx(2 / 30)


@pytest.mark.parametrize("name", RECORDINGS)
def test_streaming_keeps_no_frames(decoded, name):
    # Memory must not grow with video length: once the caller drops a frame, nothing holds it.
    assert decoded[name]["alive"] == 0


@pytest.mark.parametrize("name", RECORDINGS)
def test_audio_is_44k_mono_as_long_as_the_video(decoded, name):
    d = decoded[name]
    assert d["audio"].dtype == np.float32 and d["audio"].ndim == 1
    assert len(d["audio"]) == round(d["info"].duration_s * SAMPLE_RATE)
    assert np.all(np.isfinite(d["audio"]))


def test_silent_48k_track_is_resampled_silence(decoded):
    d = decoded["pexels_woman_silent_audio.mp4"]
    assert not d["audio"].any()
    assert d["audio_warnings"] == []


def test_audio_starting_late_is_padded_at_the_front(decoded, media_dir):
    d = decoded["face_then_cartoon_hevc.mov"]
    with av.open(str(media_dir / "face_then_cartoon_hevc.mov")) as container:
        stream = container.streams.audio[0]
        late = round(float(stream.start_time * stream.time_base) * SAMPLE_RATE)  # 2.43 s
    audio = d["audio"]
    assert late > 2 * SAMPLE_RATE
    assert not audio[:late].any()
    assert np.abs(audio[late : late + SAMPLE_RATE]).max() > 0.01
    assert any("after the first video frame" in w for w in d["audio_warnings"])


def test_audio_starting_early_is_cut(decoded, media_dir):
    """Sample 0 must be the first video frame: compare with the raw track shifted by the offset the
    container's start times give (video 0.852 s, audio 0.008 s)."""
    d = decoded["stage_and_audience.mp4"]
    with av.open(str(media_dir / "stage_and_audience.mp4")) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        offset = round(
            (float(video.start_time * video.time_base) - float(audio.start_time * audio.time_base)) * SAMPLE_RATE
        )
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)  # the authors' WAV
        raw = np.concatenate(
            [p.to_ndarray()[0] for f in container.decode(audio) for p in resampler.resample(f)]
            + [p.to_ndarray()[0] for p in resampler.resample(None)]
        ) / np.float32(32768)
    assert offset > 0.8 * SAMPLE_RATE
    n = min(len(d["audio"]), len(raw) - offset)
    np.testing.assert_allclose(d["audio"][:n], raw[offset : offset + n], atol=1e-6)
    assert any("before the first video frame" in w for w in d["audio_warnings"])


def test_audio_without_duration_runs_to_the_end_of_the_track(media_dir):
    audio, _ = media.read_audio(media_dir / "webcam_man_mp3.mp4")
    assert abs(len(audio) - 2.4185 * SAMPLE_RATE) < 0.01 * SAMPLE_RATE  # the MP3 track's length


def test_max_side_shrinks_frames(media_dir):
    with media.iter_frames(media_dir / "pexels_woman_silent_audio.mp4", max_side=320) as frames:
        frame = next(frames)
    assert frame.rgb.shape == (180, 320, 3) and frame.rgb.flags.c_contiguous


# --- files written here ---------------------------------------------------------------------------


def pattern(height: int, width: int, shade: int = 0) -> np.ndarray:
    """A picture whose orientation can be read back: red top-left, green top-right, blue
    bottom-left corners on gray."""
    img = np.full((height, width, 3), 128 if not shade else shade, np.uint8)
    q = min(height, width) // 3
    img[:q, :q] = (255, 0, 0)
    img[:q, -q:] = (0, 255, 0)
    img[-q:, :q] = (0, 0, 255)
    return img


def write_media(
    path,
    images=(),
    *,
    fps=25,
    codec="libx264",
    pix_fmt="yuv420p",
    pts=None,
    time_base=None,
    rotation=None,
    hflip=False,
    audio=None,
    audio_start=0,
    container_format=None,
):
    """Encode ``images`` (H×W×3 uint8) at ``fps``, or at explicit ``pts`` in ``time_base``, and
    ``audio = (samples float32 [channels, n], sample_rate)`` from sample ``audio_start``."""
    layouts = {1: "mono", 2: "stereo"}
    with av.open(str(path), "w", format=container_format) as out:
        video = sound = None
        if len(images):
            video = out.add_stream(codec, rate=fps)
            video.height, video.width = images[0].shape[:2]
            video.pix_fmt = pix_fmt
            if pts is not None:
                video.codec_context.time_base = time_base
                video.options = {"bf": "0"}  # no reordering: frames keep the pts given
            if rotation is not None:
                video.set_display_rotation(rotation, hflip=hflip)
        if audio is not None:
            sound = out.add_stream("aac", rate=audio[1])
            sound.layout = layouts[len(audio[0])]
        for i, img in enumerate(images):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            out.mux(video.encode(frame))
        if video is not None:
            out.mux(video.encode())
        if sound is not None:
            samples, rate = audio
            for start in range(0, samples.shape[1], 1024):
                chunk = np.ascontiguousarray(samples[:, start : start + 1024])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=sound.layout.name)
                frame.sample_rate, frame.pts = rate, audio_start + start
                out.mux(sound.encode(frame))
            out.mux(sound.encode())
    return path


def tone(hz: float, rate: int, seconds: float, channels: int = 1, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.tile(level * np.sin(2 * np.pi * hz * t), (channels, 1)).astype(np.float32)


@pytest.mark.parametrize(
    "rotation, hflip, expected",
    [
        (90, False, lambda img: np.rot90(img, 1)),
        (180, False, lambda img: np.rot90(img, 2)),
        (-90, False, lambda img: np.rot90(img, 3)),
        (90, True, lambda img: np.rot90(img, 1)[:, ::-1]),
    ],
)
def test_rotated_video_comes_out_upright(tmp_path, rotation, hflip, expected):
    """PyAV writes the MP4 display matrix (tkhd) as a phone does; frames must come out as a player
    shows them: counter-clockwise rotation by the angle, then the mirror."""
    img = pattern(48, 80)
    path = write_media(tmp_path / "phone.mp4", [img] * 3, rotation=rotation, hflip=hflip)
    info = media.probe(path)
    want = expected(img)
    assert info.rotation == rotation % 360 and info.mirrored == hflip
    assert (info.height, info.width) == want.shape[:2]
    frames = list(media.iter_frames(path))
    assert len(frames) == 3
    for frame in frames:
        assert frame.rgb.shape == want.shape and frame.rgb.flags.c_contiguous
        assert np.abs(frame.rgb.astype(int) - want).mean() < 8  # compression noise only


def test_variable_frame_rate_times_are_the_presentation_times(tmp_path):
    pts_ms = [0, 40, 70, 150, 160, 300, 333, 400]
    images = [pattern(48, 64, shade=20 * i + 10) for i in range(len(pts_ms))]
    path = write_media(tmp_path / "vfr.mp4", images, pts=pts_ms, time_base=Fraction(1, 1000))
    frames = list(media.iter_frames(path))
    np.testing.assert_allclose([f.time for f in frames], np.array(pts_ms) / 1000)
    assert [f.index for f in frames] == list(range(len(pts_ms)))


def test_frames_without_timestamps_get_extrapolated_times(tmp_path):
    # A raw H.264 elementary stream carries no timestamps at all.
    path = write_media(tmp_path / "raw.h264", [pattern(48, 64)] * 6, container_format="h264")
    frames = media.iter_frames(path)
    times = [f.time for f in frames]
    np.testing.assert_allclose(times, np.arange(6) / 25)
    assert len(frames.warnings) == 1 and "extrapolated" in frames.warnings[0]


def ts_segment(path, *, rate, channels, start_s):
    """One second of MPEG-TS: 25 black frames and a 440 Hz tone, timestamps from ``start_s``.
    MPEG-TS files can be concatenated byte for byte, as broadcast recorders and splicers do."""
    write_media(
        path,
        [np.zeros((48, 64, 3), np.uint8)] * 25,
        container_format="mpegts",
        pts=[i + round(25 * start_s) for i in range(25)],
        time_base=Fraction(1, 25),
        audio=(tone(440, rate, 1.0, channels), rate),
        audio_start=round(rate * start_s),
    )
    return path.read_bytes()


def loudness(audio: np.ndarray) -> np.ndarray:
    """Peak level of each 0.1 s."""
    return np.abs(audio).reshape(-1, SAMPLE_RATE // 10).max(axis=1)


def test_audio_format_change_midway(tmp_path):
    """A splice from 44.1 kHz mono to 48 kHz stereo: both halves come through, the stereo half
    downmixed as `ffmpeg -ac 1` into a 16-bit WAV does ((L + R) / 2, so the 0.3 tone stays 0.3)."""
    path = tmp_path / "spliced.ts"
    path.write_bytes(
        ts_segment(tmp_path / "a.ts", rate=44100, channels=1, start_s=0)
        + ts_segment(tmp_path / "b.ts", rate=48000, channels=2, start_s=1)
    )
    frames = media.iter_frames(path)
    assert len(list(frames)) == 50 and frames.warnings == []
    audio, warnings = media.read_audio(path, duration_s=2.0)
    assert warnings == []
    level = loudness(audio)
    np.testing.assert_allclose(level[1:9], 0.3, atol=0.02)
    np.testing.assert_allclose(level[11:19], 0.3, atol=0.03)


def stereo_pcm_mov(path, left: np.ndarray, right: np.ndarray):
    """A .mov with one black frame and 16-bit stereo PCM at 44.1 kHz (no codec delay, exact samples)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=25)
        video.height, video.width, video.pix_fmt = 32, 32, "yuv420p"
        sound = out.add_stream("pcm_s16le", rate=SAMPLE_RATE)
        sound.layout = "stereo"
        out.mux(video.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
        out.mux(video.encode())
        samples = np.stack([left, right]).astype(np.int16)
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[:, start : start + 1024]).T.reshape(1, -1), format="s16", layout="stereo"
            )
            frame.sample_rate, frame.pts = SAMPLE_RATE, start
            out.mux(sound.encode(frame))
        out.mux(sound.encode())
    return path


def test_stereo_is_downmixed_and_rounded_as_the_authors_16_bit_wavs(tmp_path):
    """`ffmpeg -i VIDEO -ar 44100 -ac 1 out.wav` (the authors' create_database.py) writes
    (L + R) / 2 rounded to 16 bits: libswresample scales its 1/√2 downmix to unit gain for integer
    output. read_audio gives those values, read as torchaudio reads the WAV (÷ 32768)."""
    rng = np.random.default_rng(0)
    n = SAMPLE_RATE // 2
    left = (12000 * np.sin(np.arange(n) * 0.031)).round() + rng.integers(-300, 300, n)
    right = (-7000 * np.cos(np.arange(n) * 0.017)).round() + rng.integers(-300, 300, n)
    path = stereo_pcm_mov(tmp_path / "stereo.mov", left, right)
    audio, _ = media.read_audio(path)
    assert len(audio) == n
    pcm = audio.astype(np.float64) * 32768
    np.testing.assert_array_equal(pcm, np.rint(pcm))  # 16-bit values
    assert np.abs(pcm - (left + right) / 2).max() <= 1  # (L + R) / 2, rounded
    assert np.abs(pcm - (left + right) / np.sqrt(2)).max() > 1000  # not FFmpeg's float downmix


def test_audio_equals_ffmpegs_own_wav_where_ffmpeg_is_installed(tmp_path, media_dir):
    """The authors' command itself, run by the ffmpeg CLI (Debian's ffmpeg; skipped without it):
    the same samples up to one 16-bit step (AAC decoders of other FFmpeg versions differ by that)."""
    import shutil
    import subprocess
    import wave as wavfile

    if shutil.which("ffmpeg") is None:
        pytest.skip("no ffmpeg command line here")
    video = media_dir / "stage_and_audience.mp4"
    out = tmp_path / "authors.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-ar", "44100", "-ac", "1", "-y", str(out)], check=True)
    with wavfile.open(str(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SAMPLE_RATE)
        theirs = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64)
    ours = media.read_audio(video)[0].astype(np.float64) * 32768
    # The authors trim the audio that starts before the first frame (sox, by mkvmerge's offset);
    # align on the best lag before comparing samples.
    lag = len(theirs) - len(ours)
    assert 0 < lag < SAMPLE_RATE
    assert np.abs(theirs[lag:] - ours).max() <= 1


def test_timestamps_reset_midway(tmp_path):
    """The same segment twice: timestamps restart at the splice. Video and audio both continue."""
    segment = ts_segment(tmp_path / "a.ts", rate=44100, channels=1, start_s=0)
    path = tmp_path / "reset.ts"
    path.write_bytes(segment + segment)
    frames = media.iter_frames(path)
    times = [f.time for f in frames]
    np.testing.assert_allclose(times, np.arange(50) / 25, atol=1e-9)
    assert len(frames.warnings) == 1 and "jumped backwards" in frames.warnings[0]
    audio, warnings = media.read_audio(path, duration_s=2.0)
    assert len(warnings) == 1 and "jumped backwards" in warnings[0]
    assert loudness(audio)[1:19].min() > 0.25  # no hole, no overwritten first half


@pytest.mark.parametrize("codec, pix_fmt", [("mpeg4", "yuv420p"), ("libx264", "yuv444p")])
def test_odd_sizes(tmp_path, codec, pix_fmt):
    path = write_media(tmp_path / "odd.mp4", [pattern(47, 65)] * 3, codec=codec, pix_fmt=pix_fmt)
    frames = list(media.iter_frames(path))
    assert [f.rgb.shape for f in frames] == [(47, 65, 3)] * 3
    assert all(f.rgb.flags.c_contiguous for f in frames)
    assert media.probe(path).video_codec == ("mpeg4" if codec == "mpeg4" else "h264")


def test_audio_at_48k_is_resampled_and_aligned(tmp_path):
    path = write_media(tmp_path / "tone.mp4", [pattern(48, 64)] * 25, audio=(tone(1000, 48000, 1.0), 48000))
    info = media.probe(path)
    assert info.audio_sample_rate == 48000
    audio, warnings = media.read_audio(path, duration_s=1.0)
    assert len(audio) == SAMPLE_RATE and warnings == []
    spectrum = np.abs(np.fft.rfft(audio[4410:-4410]))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(audio[4410:-4410])
    assert abs(peak_hz - 1000) < 3
    # Starts with the video (AAC's encoder delay is undone by the container's edit list).
    onset = np.argmax(np.abs(audio) > 0.1)
    assert onset < 0.005 * SAMPLE_RATE


def test_video_without_audio_gets_silence_and_a_warning(tmp_path):
    path = write_media(tmp_path / "mute.mp4", [pattern(48, 64)] * 25)
    assert not media.probe(path).has_audio
    audio, warnings = media.read_audio(path, duration_s=2.5)
    assert audio.shape == (round(2.5 * SAMPLE_RATE),) and not audio.any()
    assert len(warnings) == 1 and "no audio" in warnings[0]
    audio, _ = media.read_audio(path)  # no duration: the video's
    assert len(audio) == SAMPLE_RATE


# --- bad input: one clear line, never a traceback from av -----------------------------------------


def assert_one_line(error: MediaError, path, *words):
    text = str(error)
    assert "\n" not in text and str(path) in text
    for word in words:
        assert word in text


def all_entry_points(path):
    for call in (media.probe, media.iter_frames, media.read_audio):
        with pytest.raises(MediaError) as caught:
            call(path)
        yield caught.value


def test_missing_file(tmp_path):
    for error in all_entry_points(tmp_path / "nope.mp4"):
        assert_one_line(error, tmp_path / "nope.mp4", "no such file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    for error in all_entry_points(path):
        assert_one_line(error, path, "empty")


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are my notes, not a video\n" * 20)
    for error in all_entry_points(path):
        assert_one_line(error, path, "not a readable media file")


def test_directory(tmp_path):
    for error in all_entry_points(tmp_path):
        assert_one_line(error, tmp_path, "directory")


def test_audio_only_file(tmp_path):
    path = write_media(tmp_path / "voice.m4a", audio=(tone(440, 44100, 0.5), 44100))
    for error in all_entry_points(path):
        assert_one_line(error, path, "no video stream")


def test_truncated_copy_without_index(tmp_path, media_dir):
    # This recording keeps its index (moov) at the end: half the file has no index at all.
    data = (media_dir / "webcam_man_mp3.mp4").read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])
    for error in all_entry_points(path):
        assert_one_line(error, path, "truncated")


def test_truncated_copy_with_index_yields_what_is_there(tmp_path, media_dir):
    # Pexels' index comes first ("fast start"): the first half still decodes.
    data = (media_dir / "pexels_woman_silent_audio.mp4").read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])
    frames = media.iter_frames(path)
    times = [f.time for f in frames]
    assert 100 < len(times) < 472 and np.all(np.diff(times) > 0)
    assert len(frames.warnings) == 1 and "truncated" in frames.warnings[0]
    audio, warnings = media.read_audio(path, duration_s=media.probe(path).duration_s)
    assert len(audio) == round(19.685 * SAMPLE_RATE)
    assert any("padded with silence" in w for w in warnings)


def test_corrupt_in_the_middle_yields_the_rest_and_warns(tmp_path, media_dir):
    data = bytearray((media_dir / "pexels_woman_silent_audio.mp4").read_bytes())
    middle = len(data) // 2
    garbage = np.random.default_rng(0).integers(0, 256, 20000, np.uint8)
    data[middle : middle + len(garbage)] = garbage.tobytes()
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    frames = media.iter_frames(path)
    times = [f.time for f in frames]
    assert 400 < len(times) <= 472 and np.all(np.diff(times) > 0)
    assert times[-1] > 19  # decoding went on after the damage
    assert frames.warnings and all("\n" not in w and "damaged" in w for w in frames.warnings)


# --- starting at a frame --------------------------------------------------------------------------


def frame_digests(frames) -> list[tuple[int, float, bytes]]:
    import hashlib

    return [(f.index, f.time, hashlib.sha1(f.rgb.tobytes()).digest()) for f in frames]


@pytest.mark.parametrize(
    "name, firsts",
    [
        # B-frames, keyframes every 72 frames: mid-group, just after a keyframe, the last frame
        ("pexels_woman_silent_audio.mp4", (100, 145, 471)),
        ("face_then_cartoon_hevc.mov", (75,)),  # HEVC with B-frames, keyframes every 30
    ],
)
def test_a_stream_started_at_a_frame_is_the_whole_decode_from_there(media_dir, name, firsts):
    path = media_dir / name
    with media.iter_frames(path) as stream:
        whole = frame_digests(stream)
    times = np.array([t for _, t, _ in whole])
    for first in firsts:
        with media.iter_frames(path, first=first, times=times) as stream:
            assert frame_digests(stream) == whole[first:], first
            assert stream.frames_decoded <= len(whole) - first + 72  # from the keyframe before ``first``
        with media.iter_frames(path, first=first) as stream:  # without the times: from the start
            assert frame_digests(stream) == whole[first:], first
            assert stream.frames_decoded == len(whole)


def test_a_stream_started_after_a_timestamp_reset_is_the_whole_decode_from_there(tmp_path):
    segment = ts_segment(tmp_path / "a.ts", rate=44100, channels=1, start_s=0)
    path = tmp_path / "reset.ts"
    path.write_bytes(segment + segment)
    with media.iter_frames(path) as stream:
        whole = frame_digests(stream)
    times = np.array([t for _, t, _ in whole])
    for first in (10, 30):
        with media.iter_frames(path, first=first, times=times) as stream:
            assert frame_digests(stream) == whole[first:], first
