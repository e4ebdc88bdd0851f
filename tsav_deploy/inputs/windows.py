"""The aural input (docs/audio-window.md): the authors' 10 s log-mel window of each frame, in plain torch/numpy.

torchaudio does not import with the CPU torch these machines use, so this module reproduces
``torchaudio.transforms.MelSpectrogram`` with the authors' settings, ``AmplitudeToDB('power', 80)``
and ``Normalize(-14.8, 19.895)`` itself; tests compare it with torchaudio wherever that imports.

The window of a frame at time t is the one the authors' ``Aff2CompDataset.__getitem__`` builds
(docs/audio-window.md), not a slice of a whole-track spectrogram:

- ``s = int(t · 44100)``; the segment is samples ``[max(s − 220500, 0), … + min(441000, max(s, 882)))``
  of the track, shorter where the track ends;
- the segment gets its own mel spectrogram (centred frames, reflect padding at the segment's own
  edges), so column k is centred on sample ``start + 441·k``, on the frame's own sample grid;
- a segment shorter than 10 s gives fewer than 1001 columns; they fill the right end of the window
  and the columns to their left have power 0;
- dB ``10·log10(max(p, 1e-10))`` floored at the window's maximum − 80 dB, then ``(dB + 14.8) / 19.895``.

So the frame sits at column 500 only when 10 s ≤ t ≤ (track end − 5 s); before that the window holds
the past and the frame moves right (t < 5 s: it is the last column), and in the last 5 s of the
track the shortened segment is right-aligned too. Every window of digital silence, whatever its
length, is the one constant :func:`silent_window`.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import numpy as np
import torch

from tsav_deploy.contract import (
    AMIN,
    F_MAX,
    F_MIN,
    HOP_LENGTH,
    MIN_SEGMENT_SAMPLES,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    SEGMENT_LEAD_SAMPLES,
    SEGMENT_SAMPLES,
    SPEC_MEAN,
    SPEC_STD,
    TOP_DB,
    WIN_LENGTH,
    WINDOW_COLUMNS,
)
from tsav_deploy.media.audio import LiveTrack, resample_audio

N_FREQS = N_FFT // 2 + 1
_EDGE_COLUMNS = 2  # columns 0 and 1 (and the last two) of a segment see its reflect padding
_BLOCK_COLUMNS = 128  # columns of a phase track computed together (1.28 s)
# 10 phases × the 9 blocks a window spans, with room to spare: 13 MB.
_CACHED_BLOCKS = 400


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)  # HTK


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@functools.lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """``[513, 64]`` float32 triangular HTK mel filters, as torchaudio's ``melscale_fbanks`` with
    f_min 0, f_max 22 050, ``norm=None`` (peak 1, no area normalization).

    Computed in float64 (torchaudio uses float32; the filters differ by ~1e-7). Read-only, cached.
    """
    all_freqs = np.linspace(0.0, SAMPLE_RATE // 2, N_FREQS)
    f_pts = _mel_to_hz(np.linspace(_hz_to_mel(F_MIN), _hz_to_mel(F_MAX), N_MELS + 2))
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - all_freqs[:, None]  # [513, 66]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    bank = np.maximum(0.0, np.minimum(down, up)).astype(np.float32)
    bank.flags.writeable = False
    return bank


@functools.lru_cache(maxsize=1)
def _transform() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.hann_window(WIN_LENGTH, periodic=True), torch.from_numpy(np.ascontiguousarray(mel_filterbank().T))


def _power(waves: torch.Tensor, center: bool = True) -> torch.Tensor:
    """``[..., 64, columns]`` power mel of waves ``[..., L]`` (torchaudio semantics).

    ``center``: frames centred on ``k · 441`` with reflect padding, ``1 + L // 441`` columns, as
    torchaudio; waves of at most 512 samples cannot be reflect-padded (torchaudio raises for them)
    and are zero-padded instead, i.e. treated as surrounded by silence. Without ``center``: only
    the frames that lie inside the wave, ``1 + (L − 1024) // 441`` columns.
    """
    window, bank = _transform()
    spec = torch.stft(
        waves,
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        win_length=WIN_LENGTH,
        window=window,
        center=center,
        pad_mode="reflect" if waves.shape[-1] > N_FFT // 2 else "constant",
        return_complex=True,
    )
    return bank @ spec.abs().pow(2.0)


def mel_power(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Power mel spectrogram ``[64, 1 + len // 441]`` float32 of one mono wave: torchaudio's
    ``MelSpectrogram(44100, n_fft=1024, win_length=882, hop_length=441, n_mels=64)``, as the authors
    apply it to each segment.

    Periodic Hann window of 882 samples centred in the 1024-point frame (as ``torch.stft`` pads it),
    frames centred on ``k · 441`` with reflect padding, power 2, HTK mel filters. A ``sample_rate``
    other than 44 100 is first resampled with libswresample (:func:`tsav_deploy.media.resample_audio`).
    An empty wave gives one zero column.
    """
    wave = _as_float(_mono(wave, sample_rate))
    if len(wave) == 0:
        return np.zeros((N_MELS, 1), np.float32)
    return _power(torch.from_numpy(wave)[None])[0].numpy()


def _mono(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """A mono wave as float32, or as int16 when it holds 16-bit PCM samples (read slice by slice)."""
    wave = np.asarray(wave)
    if wave.ndim == 2 and wave.shape[0] == 1:
        wave = wave[0]
    if wave.ndim != 1:
        raise ValueError(f"expected a mono wave [samples], got shape {wave.shape}")
    if wave.dtype != np.int16:
        wave = wave.astype(np.float32, copy=False)
    elif sample_rate != SAMPLE_RATE:
        wave = _as_float(wave)
    return resample_audio(wave, sample_rate) if sample_rate != SAMPLE_RATE else wave


def _as_float(samples: np.ndarray) -> np.ndarray:
    """float32 samples; 16-bit PCM is scaled by 1/32768, as torchaudio.load reads a 16-bit WAV."""
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / np.float32(32768)
    return samples


def authors_timestamps(frame_times) -> np.ndarray:
    """Frame times (seconds from the first frame) as the authors' loader saw them: whole
    milliseconds, rounded half up, as ``mkvextract timestamps_v2`` lists a video's frames.

    Their ``t`` is ``video_ts[i] / 1000`` with ``video_ts`` read from that file, so the frame's
    sample ``int(t · 44100)`` lies on the millisecond grid, not at the exact presentation time.
    """
    return np.floor(np.asarray(frame_times, dtype=np.float64) * 1000.0 + 0.5) / 1000.0


def segment_bounds(times, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """``(start, stop)`` int64 sample indices of each frame's segment in a track of ``n_samples``.

    ``s = int(t · 44100)`` as the authors compute it (truncation); ``start = max(s − 220500, 0)``,
    ``stop = start + min(441000, max(s, 882))``, both cut at the track's end (an empty segment lies
    wholly past it).
    """
    s = np.trunc(np.asarray(times, dtype=np.float64) * SAMPLE_RATE).astype(np.int64)
    start = np.maximum(s - SEGMENT_LEAD_SAMPLES, 0)
    stop = start + np.minimum(SEGMENT_SAMPLES, np.maximum(s, MIN_SEGMENT_SAMPLES))
    return np.minimum(start, n_samples), np.minimum(stop, n_samples)


def _db(power: torch.Tensor) -> np.ndarray:
    """``10 · log10(max(p, 1e-10))`` float32, torchaudio's ``amplitude_to_DB`` before its floor."""
    return torch.log10(torch.clamp(power, min=AMIN)).mul_(10.0).numpy()


# Power 0 in dB: the value of every column left of a short segment, and of every cell of silence.
_SILENT_DB = _db(torch.zeros(1)).item()


class SpecWindows:
    """The aural inputs of frames of one wave, by the authors' rule (module docstring).

    Windows of nearby frames share most of their columns whenever their segments start on the same
    sample phase (``start mod 441``): a column's value depends only on its 1024 samples unless it
    touches the segment's edge, where the reflect padding differs. With frame times on the authors'
    millisecond grid (:func:`authors_timestamps`, as :meth:`frame_windows` uses) there are at most
    10 phases, since 10 ms is exactly 441 samples. So the interior columns come from blocks of a per-phase track,
    computed once (in dB) and kept in a small LRU cache, and only the two columns at each edge of a
    segment are transformed per window: the same values as transforming each segment whole, with
    1/100 of the FFTs and logarithms on long videos. Memory stays bounded (``_CACHED_BLOCKS`` blocks
    of 64 × 128 columns).
    """

    def __init__(self, wave: np.ndarray | LiveTrack, sample_rate: int = SAMPLE_RATE):
        """``wave``: mono float32, or int16 PCM (e.g. a memory-mapped cache file: only the slices a
        window needs are read and converted), or a live source's growing :class:`LiveTrack`."""
        self.wave = wave if isinstance(wave, LiveTrack) else _mono(wave, sample_rate)
        # (phase, block) -> (dB columns, first column, the sample its samples stop at)
        self._blocks: OrderedDict[tuple[int, int], tuple[np.ndarray, int, int]] = OrderedDict()
        self._horizon: int | None = None  # samples from here on read as silence (see ``windows``)

    def windows(self, times, horizons=None) -> np.ndarray:
        """Normalized windows ``[N, 1, 64, 1001]`` float32 of frames at ``times`` (seconds on the
        wave's clock, sample 0 at t = 0). ``horizons`` (one sample index per frame, or None): the
        frame's window hears silence from that sample on, as if the wave had been silenced there
        (a live stream's window that does not wait for all of its look-ahead)."""
        starts, stops = segment_bounds(np.atleast_1d(times), len(self.wave))
        limits = [None] * len(starts) if horizons is None else [int(h) for h in horizons]
        out = np.full((len(starts), 1, N_MELS, WINDOW_COLUMNS), _SILENT_DB, dtype=np.float32)
        for window, start, stop, horizon in zip(out[:, 0], starts.tolist(), stops.tolist(), limits):
            self._horizon = horizon
            self._segment_db(start, stop, window)
            # AmplitudeToDB('power', 80) over the whole window, then Normalize(-14.8, 19.895).
            np.maximum(window, window.max() - np.float32(TOP_DB), out=window)
        out -= np.float32(SPEC_MEAN)
        out /= np.float32(SPEC_STD)
        return out

    def frame_windows(self, frame_times, horizons=None) -> np.ndarray:
        """The windows of decoded frames at ``frame_times`` (seconds from the first frame): their
        times go on the authors' millisecond grid first (:func:`authors_timestamps`). Every part of
        the pipeline (annotation, training, calibration, bench, live) takes its aural inputs from
        here. ``horizons``: as for :meth:`windows`."""
        return self.windows(authors_timestamps(frame_times), horizons)

    def frame_silent(self, frame_times, horizons=None) -> np.ndarray:
        """``[N]`` bool: which frames' windows are digital silence (their segment holds only zeros,
        or nothing, before its horizon), i.e. equal :func:`silent_window`."""
        starts, stops = segment_bounds(authors_timestamps(np.atleast_1d(frame_times)), len(self.wave))
        limits = stops.tolist() if horizons is None else np.minimum(stops, np.asarray(horizons)).tolist()
        return np.array([not self.wave[a:b].any() for a, b in zip(starts.tolist(), limits)], dtype=bool)

    def forget(self) -> None:
        """Drop the cached blocks (a live track whose end moved back into the past)."""
        self._blocks.clear()

    def first_sample(self, frame_time: float) -> int:
        """The earliest sample that the window of a frame at ``frame_time`` (or later) reads: its
        segment's start, less the block of the phase track the segment's interior may begin in."""
        start, _ = segment_bounds(authors_timestamps([frame_time]), len(self.wave))
        return max(0, int(start[0]) - _BLOCK_COLUMNS * HOP_LENGTH - N_FFT)

    def _segment_db(self, start: int, stop: int, window: np.ndarray) -> None:
        """The dB mel of samples ``[start, stop)`` as one transform of them would give, written
        into the last ``1 + L // 441`` columns of ``window`` [64, 1001]."""
        length = stop - start
        if length == 0:
            return
        out = window[:, WINDOW_COLUMNS - 1 - length // HOP_LENGTH :]
        # Columns 0-1 reach left of the segment (their frames start 512 samples before their centre);
        # columns after `last_inner` reach right of it; those in between are interior.
        half = N_FFT // 2
        last_inner = (length - half) // HOP_LENGTH
        if length <= half or last_inner < _EDGE_COLUMNS:
            out[...] = _db(_power(torch.from_numpy(self._samples(start, stop))[None])[0])
            return
        head = self._samples(start, min(stop, start + _EDGE_COLUMNS * HOP_LENGTH + half))
        out[:, :_EDGE_COLUMNS] = _db(_power(torch.from_numpy(head)[None])[0, :, :_EDGE_COLUMNS])
        # The tail transform starts on a column, two columns before the first right-edge one, so its
        # own left padding touches none of the columns taken from it.
        tail_first = last_inner + 1 - _EDGE_COLUMNS
        tail = _power(torch.from_numpy(self._samples(start + tail_first * HOP_LENGTH, stop))[None])[0]
        out[:, last_inner + 1 :] = _db(tail[:, _EDGE_COLUMNS:])
        phase, first_column = start % HOP_LENGTH, start // HOP_LENGTH
        inner = out[:, _EDGE_COLUMNS : last_inner + 1]
        self._interior(phase, first_column + _EDGE_COLUMNS, first_column + last_inner + 1, inner)

    def _samples(self, start: int, stop: int) -> np.ndarray:
        samples = np.ascontiguousarray(_as_float(self.wave[start:stop]))
        if self._horizon is not None and stop > self._horizon:
            samples = samples.copy() if not samples.flags.writeable or samples.base is not None else samples
            samples[max(0, self._horizon - start) :] = 0
        return samples

    def _interior(self, phase: int, first: int, stop: int, out: np.ndarray) -> None:
        """Columns ``[first, stop)`` of the phase's track (column g centred on ``phase + 441·g``)."""
        for block in range(first // _BLOCK_COLUMNS, (stop - 1) // _BLOCK_COLUMNS + 1):
            values, offset = self._block(phase, block)
            lo, hi = max(first, offset), min(stop, offset + values.shape[1])
            out[:, lo - first : hi - first] = values[:, lo - offset : hi - offset]

    def _block(self, phase: int, block: int) -> tuple[np.ndarray, int]:
        """One block of the phase's track in dB: its columns whose frames lie inside the wave, and
        the global index of its first column."""
        key = (phase, block)
        if key in self._blocks and (self._horizon is None or self._blocks[key][2] <= self._horizon):
            self._blocks.move_to_end(key)
            return self._blocks[key][:2]
        half = N_FFT // 2
        first = max(block * _BLOCK_COLUMNS, -(-(half - phase) // HOP_LENGTH))
        last = min((block + 1) * _BLOCK_COLUMNS, (len(self.wave) - half - phase) // HOP_LENGTH + 1)
        stop = phase + (last - 1) * HOP_LENGTH + half
        samples = self._samples(phase + first * HOP_LENGTH - half, stop)
        block_db = (_db(_power(torch.from_numpy(samples), center=False)), first)
        # A block is kept only where it is what every later window reads: a live track's samples past
        # ``final`` may still change (they read as silence until they arrive), its end may move on
        # (a block cut short by it is not whole), and a horizon silences what lies past it.
        whole = not isinstance(self.wave, LiveTrack) or last == (block + 1) * _BLOCK_COLUMNS
        if whole and stop <= getattr(self.wave, "final", stop) and (self._horizon is None or stop <= self._horizon):
            self._blocks[key] = (*block_db, stop)
            if len(self._blocks) > _CACHED_BLOCKS:
                self._blocks.popitem(last=False)
        return block_db


def spec_windows(wave: np.ndarray, times, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The normalized aural inputs ``[N, 1, 64, 1001]`` float32 of frames at ``times`` (seconds on
    the wave's own clock, sample 0 at t = 0), by the authors' rule (module docstring). For many
    calls on one wave, keep a :class:`SpecWindows`."""
    return SpecWindows(wave, sample_rate).windows(times)


def spec_window(wave: np.ndarray, t_seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The normalized aural input ``[1, 64, 1001]`` float32 of the frame at ``t_seconds``, computed
    from the mono wave exactly as the authors' loader computes it (see :func:`spec_windows`)."""
    return spec_windows(wave, [t_seconds], sample_rate)[0]


def silent_window() -> np.ndarray:
    """``[1, 1, 64, 1001]``: the window of digital silence (or of no audio track), the same value in
    every cell whatever the segment's length: power 0, −100 dB, normalized."""
    return spec_windows(np.zeros(0, np.float32), [0.0])
