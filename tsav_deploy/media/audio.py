"""The audio track as the authors' WAV holds it: :func:`read_audio` returns the first audio track as
mono 44.1 kHz, aligned to the first video frame (sample 0 is that frame's time, as the authors'
``create_database.py`` aligned their WAVs: silence where the audio starts later, trimmed where it
starts earlier), the samples of their 16-bit WAVs (``ffmpeg -ar 44100 -ac 1``) as torchaudio reads
them. :class:`LiveTrack` is the same track as a live stream delivers it, bounded in memory. Damage
is a warning string (the second value of ``read_audio``), not an exception."""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Iterator

import av
import av.stream
import numpy as np

from tsav_deploy.contract import SAMPLE_RATE, WAVE_FORMAT
from tsav_deploy.media.probe import VideoInfo, decode_stream, open_media, probe, seconds_of

# Audio offsets up to this are routine (encoder delay and padding, a frame of offset): not worth a
# warning, and timestamps going back by less are overlapping pieces, not a reset of the stream.
_ROUTINE_OFFSET_S = 0.1
# Silence a file's audio track holds for gaps forward, in all (1 h: 318 MB of int16): gaps beyond it
# close up, as a reset does, so a clock jumping hours ahead costs no memory.
_MAX_GAP_SILENCE_S = 3600.0
# An audio track's buffer is allocated for at most this much at first (the declared length, an hour
# of int16: 318 MB) and grows by doubling as sound actually arrives.
_PREALLOCATE_S = 3600.0
# A live track: a piece this far past the held audio starts a new stretch (no silence held for the
# gap), and at most this much audio is held, ahead of the oldest frame still waiting (53 MB).
_LIVE_GAP_S = 5.0
LIVE_AUDIO_HOLD_S = 600.0
# Audio is resampled in pieces of this many input samples when a whole waveform is given at once.
_RESAMPLE_CHUNK = 1 << 16


class _AlignedTrack:
    """A silent mono 44.1 kHz track, sample 0 at the first video frame, that decoded pieces are
    written into at their own timestamps.

    Placing pieces by timestamp (instead of concatenating them) aligns audio to video, cuts what
    lies before the first frame, and keeps gaps in a damaged stream silent instead of shifting
    everything after them. A timestamp that jumps back by more than ``_ROUTINE_OFFSET_S`` is a reset
    (as for video frames): the piece continues where the previous one ended and later pieces keep
    that shift. Silence for gaps forward is held up to ``_MAX_GAP_SILENCE_S`` in all: a gap beyond
    what is left of it is closed up the same way, so a clock that jumps hours ahead costs no memory.
    With a fixed length, samples beyond it are dropped; otherwise the track grows.
    """

    def __init__(self, origin_s: float, length: int | None, capacity: int = SAMPLE_RATE, dtype=np.float32):
        self._origin = origin_s * SAMPLE_RATE  # container time of sample 0, in samples
        self._fixed = length
        # A growing track starts at `capacity` (the stream's declared length): growing by doubling
        # and copying out at the end would hold up to three copies of an hour of audio at once.
        self._data = np.zeros(length if length is not None else max(1, capacity), dtype=dtype)
        self._shift = 0
        self._cursor: int | None = None  # where the previous piece ended
        self._gap_left = int(_MAX_GAP_SILENCE_S * SAMPLE_RATE)
        self.first: int | None = None  # where the first piece started (negative: cut)
        self.end = 0  # end of the samples written
        self.resets = 0
        self.jumps = 0  # gaps forward closed up

    def add(self, seconds: float | None, samples: np.ndarray) -> None:
        position = (self._cursor or 0) if seconds is None else self._placed(seconds)
        if self.first is None:
            self.first = position
        self._cursor = position + len(samples)
        self._write(position, samples)

    def _placed(self, seconds: float) -> int:
        position = int(round(seconds * SAMPLE_RATE - self._origin)) + self._shift
        if self._cursor is None:
            return position
        gap = position - self._cursor
        if -gap > _ROUTINE_OFFSET_S * SAMPLE_RATE:
            self.resets += 1
        elif gap > self._gap_left and self._fixed is None:
            self.jumps += 1
        else:
            self._gap_left -= max(0, gap)
            return position
        self._shift -= gap
        return self._cursor

    def _write(self, position: int, samples: np.ndarray) -> None:
        if position < 0:
            samples = samples[-position:]
            position = 0
        stop = position + len(samples)
        if self._fixed is not None:
            stop = min(stop, self._fixed)
        elif stop > len(self._data):
            grown = np.zeros(max(stop, 2 * len(self._data)), dtype=self._data.dtype)
            grown[: self.end] = self._data[: self.end]
            self._data = grown
        if stop > position:
            self._data[position:stop] = samples[: stop - position]
            self.end = max(self.end, stop)

    def result(self) -> np.ndarray:
        return self._data if self._fixed is not None else self._data[: self.end]


class _Stretch:
    """Samples held from ``start`` on, contiguous; capacity beyond ``length`` reads as silence."""

    def __init__(self, start: int):
        self.start, self.length = start, 0
        self.data = np.zeros(0, dtype=np.int16)

    @property
    def stop(self) -> int:
        return self.start + self.length

    def cut_before(self, position: int) -> None:
        cut = min(position - self.start, self.length)
        if cut > 0:
            kept = self.length - cut
            self.data[:kept] = self.data[cut : self.length]
            self.data[kept : self.length] = 0  # a gap written later must read as silence
            self.start, self.length = self.start + cut, kept


class LiveTrack(_AlignedTrack):
    """The audio of a live source as it arrives: an :class:`_AlignedTrack` (int16, sample 0 at the
    first video frame) that keeps only the samples from :meth:`discard_before`'s mark on, so memory
    stays bounded however long the stream runs.

    What it holds is a list of stretches: a piece more than ``_LIVE_GAP_S`` past the held audio
    starts a new one, so a jump of the stream's clock (hours ahead) holds no silence, and the
    alignment to the video stays by timestamp. At most ``LIVE_AUDIO_HOLD_S`` seconds are held in all
    (audio arriving that far ahead of the video): samples beyond are dropped and counted in
    ``dropped``.

    Slicing takes absolute sample positions; samples not yet received read as silence. While the
    stream runs, ``len()`` is unbounded (the track's end is not known; a window reaching past what
    arrived sees silence there); after :meth:`finish` it is the track's real length, as
    :func:`read_audio` would give. ``final`` is where samples stop being final: a late piece may
    still overlap the last ``_ROUTINE_OFFSET_S`` before the end.
    """

    def __init__(self, origin_s: float):
        super().__init__(origin_s, None, capacity=1, dtype=np.int16)
        self._gap_left = np.iinfo(np.int64).max  # gaps cost nothing here: never closed up
        self._stretches: list[_Stretch] = []
        self._base = 0  # samples before it were discarded
        self.finished = False
        self.dropped = 0

    def __len__(self) -> int:
        return self.end if self.finished else np.iinfo(np.int64).max // 2

    @property
    def final(self) -> int:
        return self.end if self.finished else max(0, self.end - int(_ROUTINE_OFFSET_S * SAMPLE_RATE))

    @property
    def nbytes(self) -> int:
        """Bytes of sample memory held."""
        return sum(stretch.data.nbytes for stretch in self._stretches)

    def finish(self) -> None:
        self.finished = True

    def discard_before(self, position: int) -> None:
        """Forget samples before ``position`` (no window will read them again)."""
        self._base = max(self._base, min(position, self.end))
        for stretch in self._stretches:
            stretch.cut_before(self._base)
        self._stretches = [s for s in self._stretches if s.length or s is self._stretches[-1]]

    def __getitem__(self, where: slice) -> np.ndarray:
        start, stop = where.start or 0, where.stop
        if start < self._base:
            raise IndexError(f"samples before {self._base} were discarded (asked for {start})")
        out = np.zeros(max(0, stop - start), dtype=np.int16)
        for stretch in self._stretches:
            low, high = max(start, stretch.start), min(stop, stretch.stop)
            if low < high:
                out[low - start : high - start] = stretch.data[low - stretch.start : high - stretch.start]
        return out

    def _write(self, position: int, samples: np.ndarray) -> None:
        last = self._stretch_at(position)
        if position < last.start:  # the part before lies in the silence before the stretch
            samples, position = samples[last.start - position :], last.start
        held = sum(s.length for s in self._stretches) - last.length
        room = int(LIVE_AUDIO_HOLD_S * SAMPLE_RATE) - held - (position - last.start)
        if len(samples) > room:
            self.dropped += len(samples) - max(room, 0)
            samples = samples[: max(room, 0)]
        if not len(samples):
            return
        stop = position + len(samples)
        if stop - last.start > len(last.data):
            wanted = max(stop - last.start, 2 * len(last.data), 16 * SAMPLE_RATE)
            grown = np.zeros(min(wanted, room + position - last.start), np.int16)
            grown[: last.length] = last.data[: last.length]
            last.data = grown
        last.data[position - last.start : stop - last.start] = samples
        last.length = max(last.length, stop - last.start)
        self.end = max(self.end, stop)

    def _stretch_at(self, position: int) -> _Stretch:
        position = max(position, self._base)
        if not self._stretches or position > self._stretches[-1].stop + _LIVE_GAP_S * SAMPLE_RATE:
            if self._stretches and not self._stretches[-1].length:
                self._stretches.pop()
            self._stretches.append(_Stretch(position))
        return self._stretches[-1]


def mono_resampler(sample_format: str = WAVE_FORMAT) -> av.AudioResampler:
    # libswresample, as `ffmpeg -i VIDEO -ar 44100 -ac 1 out.wav` in the authors' create_database.py:
    # the same anti-aliasing filter and, with 16-bit output as the WAV they trained on, the same
    # downmix (stereo -> (L + R) / 2; libswresample only scales the 1/sqrt 2 matrix down to unit
    # gain for integer output) and the same rounding to 16 bits.
    return av.AudioResampler(format=sample_format, layout="mono", rate=SAMPLE_RATE)


def mono_samples(frame: av.AudioFrame, pcm16: bool = False) -> np.ndarray:
    samples = frame.to_ndarray().reshape(-1)  # packed mono: shape (1, samples)
    if samples.dtype == np.int16 and not pcm16:
        return samples.astype(np.float32) / np.float32(32768)  # as torchaudio.load reads a 16-bit WAV
    return samples


class MonoResampling:
    """Decoded audio frames -> mono 44.1 kHz frames, timestamps kept, as ``read_audio`` resamples.

    A resampler is set up for one input format; streams that change sample rate or channel layout
    midway (spliced broadcasts, HE-AAC switching) get a fresh one from that frame on, after the old
    one's buffered tail. Call :meth:`flush` after the last frame for the final tail.
    """

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._source: tuple | None = None

    def resample(self, frame: av.AudioFrame) -> list[av.AudioFrame]:
        out: list[av.AudioFrame] = []
        signature = (frame.format.name, frame.layout.name, frame.sample_rate)
        if signature != self._source:
            out += self.flush()
            self._resampler, self._source = mono_resampler(), signature
        return out + self._resampler.resample(frame)

    def flush(self) -> list[av.AudioFrame]:
        return self._resampler.resample(None) if self._resampler is not None else []


def _resampled(container, warnings: list[str], what: str) -> Iterator[av.AudioFrame]:
    """The first audio stream decoded and resampled to mono 44.1 kHz (:class:`MonoResampling`)."""
    resampling = MonoResampling()
    for frame in decode_stream(container, container.streams.audio[0], warnings, what):
        yield from resampling.resample(frame)
    yield from resampling.flush()


def read_audio(
    path: str | os.PathLike, *, duration_s: float | None = None, pcm16: bool = False, info: VideoInfo | None = None
) -> tuple[np.ndarray, list[str]]:
    """The first audio track as mono float32 at 44.1 kHz, sample 0 at the first video frame
    (``pcm16``: the int16 samples themselves, half the memory; float32 is ``int16 / 32768``).

    With ``duration_s`` the result has exactly ``round(duration_s * 44100)`` samples (silence
    appended or the tail cut); without it, it runs to the end of the audio. A file without audio
    gives silence (of the video's duration when none is given) and a warning. ``info``: the file's
    :func:`probe` result where the caller has it (a video is probed once). Returns the samples and a
    list of one-line warnings.
    """
    info = info or probe(path)  # validates the file and gives the first video frame's time
    name = info.path
    warnings: list[str] = []
    dtype = np.int16 if pcm16 else np.float32
    if duration_s is None and not info.has_audio:
        duration_s = info.duration_s
    length = None if duration_s is None else max(0, int(round(duration_s * SAMPLE_RATE)))
    if not info.has_audio:
        warnings.append(f"{name}: has no audio track; the aural stream gets silence")
        return _AlignedTrack(info.start_time_s, length, dtype=dtype).result(), warnings
    with open_media(name) as container:
        track = _AlignedTrack(info.start_time_s, length, _declared_samples(container.streams.audio[0], info), dtype)
        for piece in _resampled(container, warnings, f"{name} (audio)"):
            track.add(piece.time, mono_samples(piece, pcm16))
    warnings += _alignment_notes(name, track, length)
    return track.result(), warnings


def _declared_samples(stream: av.audio.stream.AudioStream, info: VideoInfo) -> int:
    """The audio stream's length at 44.1 kHz as the container declares it (else the video's), plus
    a second: enough that reading it rarely grows the buffer. A declaration is only a hint (a
    jumping clock declares hours that hold no sound): at most ``_PREALLOCATE_S`` is taken at once."""
    declared = seconds_of(stream.duration, stream.time_base) if stream.duration else None
    seconds = declared if declared and declared > 0 else info.duration_s
    return int(min(max(seconds, 0.0), _PREALLOCATE_S) * SAMPLE_RATE) + SAMPLE_RATE


def _alignment_notes(name: str, track: _AlignedTrack, length: int | None) -> list[str]:
    """One-line notes on how far the audio had to be shifted, padded or reset."""
    if track.first is None:
        return [f"{name}: the audio track holds no decodable sound; using silence"]
    notes = []
    limit = _ROUTINE_OFFSET_S * SAMPLE_RATE
    if track.first > limit:
        notes.append(
            f"{name}: audio starts {track.first / SAMPLE_RATE:.2f} s after the first video frame; padded with silence"
        )
    elif track.first < -limit:
        notes.append(
            f"{name}: audio starts {-track.first / SAMPLE_RATE:.2f} s before the first video frame; that part was cut"
        )
    if length is not None and length - track.end > limit:
        notes.append(
            f"{name}: audio ends {(length - track.end) / SAMPLE_RATE:.2f} s before the video; padded with silence"
        )
    if track.resets:
        notes.append(
            f"{name}: audio timestamps jumped backwards {track.resets} time(s) (spliced or reset "
            "stream); later audio was shifted to follow on"
        )
    if track.jumps:
        notes.append(
            f"{name}: audio timestamps jumped forwards {track.jumps} time(s) past {_MAX_GAP_SILENCE_S / 3600:g} h "
            "of silence in all; later audio was shifted to follow on"
        )
    return notes


def resample_audio(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at ``sample_rate`` -> 44.1 kHz with the same resampler as read_audio."""
    wave = np.ascontiguousarray(wave, dtype=np.float32).reshape(-1)
    if sample_rate == SAMPLE_RATE:
        return wave
    resampler = mono_resampler("flt")  # a float wave stays float: only the rate changes
    time_base = Fraction(1, sample_rate)
    pieces = []
    for start in range(0, len(wave), _RESAMPLE_CHUNK):
        frame = av.AudioFrame.from_ndarray(wave[None, start : start + _RESAMPLE_CHUNK], format="flt", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = time_base
        pieces += [mono_samples(piece) for piece in resampler.resample(frame)]
    pieces += [mono_samples(piece) for piece in resampler.resample(None)]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
