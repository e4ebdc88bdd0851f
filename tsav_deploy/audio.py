"""Log-mel frontend of the aural stream (DESIGN §2), in plain torch/numpy.

torchaudio does not import with the CPU torch these machines use, so this module reproduces
``torchaudio.transforms.MelSpectrogram`` (the authors' settings) and ``AmplitudeToDB('power', 80)``
+ ``Normalize(-14.8, 19.895)`` itself; tests compare it with torchaudio wherever that imports.

Two steps, so a video's audio is transformed once, not once per frame:

1. :func:`mel_power` — the power mel spectrogram of the whole track, ``[64, T]``, one column per
   10 ms hop (column c is centred on sample ``c * 441``).
2. :func:`mel_windows` / :func:`mel_window` — for a frame at time t, the 1001 columns centred on
   :func:`centre_columns` ``(t)`` with the per-window dB floor and normalization. A
   :class:`LogMelTrack` holds the dB track so that batches of windows only slice, floor and scale.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from .constants import (
    AMIN,
    F_MAX,
    F_MIN,
    HOP_LENGTH,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    SPEC_MEAN,
    SPEC_STD,
    TOP_DB,
    WIN_LENGTH,
    WINDOW_COLUMNS,
)
from .media import resample_audio

N_FREQS = N_FFT // 2 + 1
# mel_power transforms this many columns (60 s) at a time: the complex STFT of a whole hour would
# need 1.5 GB, a chunk needs 25 MB, and chunking is exact (each column sees only its own samples).
_CHUNK_COLUMNS = 6000
_HALF_WINDOW = WINDOW_COLUMNS // 2
# Power 0 after the amin clamp, about -100 dB, computed in float32 exactly as the track's own columns
# are (and as torchaudio computes it), so that every silent column, padded or decoded, has one value.
_SILENT_DB = np.float32(10.0) * np.log10(np.maximum(np.float32(0.0), np.float32(AMIN)))


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


def mel_power(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Power mel spectrogram ``[64, 1 + len // 441]`` float32 of a mono track (torchaudio's
    ``MelSpectrogram(44100, n_fft=1024, win_length=882, hop_length=441, n_mels=64)``).

    Periodic Hann window of 882 samples centred in the 1024-point frame (as ``torch.stft`` pads it),
    frames centred on ``c * 441`` with reflect padding, power 2, HTK mel filters.

    - ``sample_rate`` other than 44 100: the wave is first resampled with libswresample, the same
      resampler :func:`tsav_deploy.media.read_audio` uses, so both paths give the same samples.
    - Tracks of at most 512 samples cannot be reflect-padded (torchaudio raises for them); they are
      zero-padded instead, i.e. treated as surrounded by silence. Empty tracks give one zero column.
    - Long tracks are transformed 60 s at a time; memory is the output plus one chunk.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2 and wave.shape[0] == 1:
        wave = wave[0]
    if wave.ndim != 1:
        raise ValueError(f"mel_power expects a mono track [samples], got shape {wave.shape}")
    if sample_rate != SAMPLE_RATE:
        wave = resample_audio(wave, sample_rate)
    pad = N_FFT // 2
    padded = np.pad(wave, pad, mode="reflect" if len(wave) > pad else "constant")
    n_columns = 1 + len(wave) // HOP_LENGTH
    window = torch.hann_window(WIN_LENGTH, periodic=True)
    bank_t = torch.from_numpy(np.ascontiguousarray(mel_filterbank().T))  # [64, 513]
    out = np.empty((N_MELS, n_columns), dtype=np.float32)
    for first in range(0, n_columns, _CHUNK_COLUMNS):
        last = min(first + _CHUNK_COLUMNS, n_columns)
        segment = torch.from_numpy(padded[first * HOP_LENGTH : (last - 1) * HOP_LENGTH + N_FFT])
        spec = torch.stft(
            segment,
            n_fft=N_FFT,
            hop_length=HOP_LENGTH,
            win_length=WIN_LENGTH,
            window=window,
            center=False,  # the whole track was padded above, so chunks join seamlessly
            return_complex=True,
        )
        out[:, first:last] = (bank_t @ spec.abs().pow(2.0)).numpy()
    return out


def centre_columns(times) -> np.ndarray:
    """Mel column (int64) at the centre of each time's window: round(t · 100), ties to the earlier.

    The authors' loader centred each 10 s window on sample ``int(t · 44100)``; column c is centred
    on sample ``c · 441``, so the column nearest that sample is ``(⌊t · 44100⌋ + 220) // 441``.
    That is round(t · 100) except when t · 100 is (within a sample of) k + ½, where it gives k
    (numpy's half-to-even would give k or k + 1 by the parity of k, which means nothing for time).
    It is safe from float noise in t · 100 too: 0.29 · 100 = 28.999999999999996 still gives 29.
    """
    samples = np.floor(np.asarray(times, dtype=np.float64) * SAMPLE_RATE).astype(np.int64)
    return (samples + HOP_LENGTH // 2) // HOP_LENGTH


class LogMelTrack:
    """A power mel track in dB, padded with silent columns, from which windows are cut.

    ``10·log10(max(p, 1e-10))`` is computed once for the whole track; each window then only needs
    its maximum (from per-column maxima), the floor at max − 80 dB and the normalization.
    """

    def __init__(self, power: np.ndarray):
        power = np.asarray(power, dtype=np.float32)
        if power.ndim != 2 or power.shape[0] != N_MELS:
            raise ValueError(f"expected a mel power track [{N_MELS}, T], got shape {power.shape}")
        self.n_columns = power.shape[1]
        # WINDOW_COLUMNS silent columns on each side: any window that reaches past them is
        # entirely silent, so centres can be clamped and every window is a plain slice.
        padded = (N_MELS, self.n_columns + 2 * WINDOW_COLUMNS)
        self._db = np.full(padded, _SILENT_DB, dtype=np.float32)
        inner = self._db[:, WINDOW_COLUMNS : WINDOW_COLUMNS + self.n_columns]
        np.log10(np.maximum(power, np.float32(AMIN)), out=inner)
        inner *= np.float32(10.0)
        self._column_max = np.lib.stride_tricks.sliding_window_view(
            self._db.max(axis=0), WINDOW_COLUMNS
        )

    def windows(self, times) -> np.ndarray:
        """Normalized windows ``[N, 1, 64, 1001]`` float32 centred on each time (seconds)."""
        centres = centre_columns(np.atleast_1d(times))
        centres = np.clip(centres, -_HALF_WINDOW - 1, self.n_columns + _HALF_WINDOW)
        starts = centres - _HALF_WINDOW + WINDOW_COLUMNS
        floors = self._column_max[starts].max(axis=1) - np.float32(TOP_DB)
        out = np.empty((len(starts), 1, N_MELS, WINDOW_COLUMNS), dtype=np.float32)
        for window, start, floor in zip(out, starts, floors):
            np.maximum(self._db[:, start : start + WINDOW_COLUMNS], floor, out=window[0])
        out -= np.float32(SPEC_MEAN)
        out /= np.float32(SPEC_STD)
        return out


def mel_windows(track: np.ndarray | LogMelTrack, times) -> np.ndarray:
    """Normalized log-mel windows ``[N, 1, 64, 1001]`` for frames at ``times`` (seconds).

    Column 500 of each window is :func:`centre_columns` of its time; columns outside the track have
    power 0; dB = 10·log10(max(p, 1e-10)) floored at the window's maximum − 80 dB (torchaudio's
    ``AmplitudeToDB('power', 80)`` over the whole window), then (dB + 14.8) / 19.895. Pass a
    :class:`LogMelTrack` when calling repeatedly on one track, to convert it to dB only once.
    """
    if not isinstance(track, LogMelTrack):
        track = LogMelTrack(track)
    return track.windows(times)


def mel_window(mel_power_track: np.ndarray | LogMelTrack, t_seconds: float) -> np.ndarray:
    """The normalized window ``[1, 64, 1001]`` for one frame at ``t_seconds`` (see mel_windows)."""
    return mel_windows(mel_power_track, [t_seconds])[0]
