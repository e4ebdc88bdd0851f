"""A file's sound decoded independently of tsav (PyAV only), for comparing two files' audio."""

from __future__ import annotations

import pathlib

import av
import numpy as np

RATE = 16_000  # tracks are compared at this rate


def sound_from_first_frame(path: pathlib.Path) -> np.ndarray:
    """The first audio track decoded by PyAV, mono float at ``RATE``, placed by its timestamps so that
    sample 0 is the first video frame's time."""
    with av.open(str(path)) as container:
        first_frame = next(container.decode(video=0)).time
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        pieces = [out for frame in container.decode(audio=0) for out in resampler.resample(frame)]
        pieces += resampler.resample(None)
    wave = np.concatenate([piece.to_ndarray().reshape(-1) for piece in pieces]).astype(np.float64)
    offset = round((pieces[0].time - first_frame) * RATE)
    return np.concatenate([np.zeros(offset), wave]) if offset >= 0 else wave[-offset:]


def check_in_step(source: np.ndarray, written: np.ndarray, frame_s: float, lag_s: float | None = None) -> None:
    """``written`` is ``source``'s sound: as long within a frame, best correlated (within +-0.2 s,
    above 0.9) at a lag under ``lag_s`` (a frame by default), and, without ``lag_s``, correlated
    above 0.9 at zero lag too."""
    assert abs(len(written) - len(source)) <= frame_s * RATE, (len(written), len(source))
    n = min(len(source), len(written))
    source, written = source[:n], written[:n]
    correlation = np.fft.irfft(np.fft.rfft(written, 2 * n) * np.conj(np.fft.rfft(source, 2 * n)))
    lags = np.r_[0 : RATE // 5, -(RATE // 5) : 0]
    best = int(lags[int(np.argmax(correlation[lags]))])
    assert abs(best) <= (frame_s if lag_s is None else lag_s) * RATE, best
    shifted = (source[: n - best], written[best:]) if best >= 0 else (source[-best:], written[: n + best])
    assert np.corrcoef(*shifted)[0, 1] > 0.9
    if lag_s is None:
        assert np.corrcoef(source, written)[0, 1] > 0.9
