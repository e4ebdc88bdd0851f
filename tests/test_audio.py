"""tsav_deploy.audio against an independent float64 NumPy implementation, the authors' figures
(torchaudio 2.11 output in ../shared/reference/mel_ref.npz) and torchaudio itself where it
imports."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tsav_deploy import audio

SR, N_FFT, WIN, HOP, MELS, COLS = 44100, 1024, 882, 441, 64, 1001  # the paper's figures, restated


# --- an independent reference: float64, explicit frames, explicit triangles -----------------------


def reference_filterbank() -> np.ndarray:
    """HTK triangles built one filter at a time: 0 at the neighbours' centres, 1 at its own."""
    hz_to_mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    mel_to_hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = mel_to_hz(np.linspace(0, hz_to_mel(SR / 2), MELS + 2))
    freqs = np.arange(N_FFT // 2 + 1) * (SR / 2) / (N_FFT // 2)
    bank = np.zeros((len(freqs), MELS))
    for m in range(MELS):
        lo, mid, hi = edges[m : m + 3]
        rising = (freqs - lo) / (mid - lo)
        falling = (hi - freqs) / (hi - mid)
        bank[:, m] = np.clip(np.minimum(rising, falling), 0, None)
    return bank


def reference_mel_power(wave: np.ndarray) -> np.ndarray:
    """torch.stft(center=True, reflect) semantics written out: frame c covers samples
    c·441 − 512 … c·441 + 511 of the reflect-padded track; the 882-sample periodic Hann window sits
    in the middle of the 1024 points."""
    mode = "reflect" if len(wave) > N_FFT // 2 else "constant"
    x = np.pad(wave.astype(np.float64), N_FFT // 2, mode=mode)
    n = 1 + len(wave) // HOP
    window = np.zeros(N_FFT)
    left = (N_FFT - WIN) // 2
    window[left : left + WIN] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)
    frames = x[np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]] * window
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return (power @ reference_filterbank()).T


def reference_window(power: np.ndarray, column: int) -> np.ndarray:
    """The window around ``column`` written out: zero power outside the track, dB, floor at max −
    80 dB, normalize."""
    cols = np.arange(column - COLS // 2, column + COLS // 2 + 1)
    inside = (cols >= 0) & (cols < power.shape[1])
    p = np.zeros((MELS, COLS))
    p[:, inside] = power[:, cols[inside]]
    db = 10 * np.log10(np.maximum(p, 1e-10))
    db = np.maximum(db, db.max() - 80)
    return ((db + 14.8) / 19.895)[None]


def to_db(p) -> np.ndarray:
    return 10 * np.log10(np.maximum(np.asarray(p, dtype=np.float64), 1e-10))


# float32 STFTs (ours, torchaudio's) differ from float64 by up to ~0.01 dB in the weakest bins.
DB_TOL = 0.02


@pytest.fixture(scope="module")
def speech(refcommon):
    return refcommon.synthetic_speechlike(12.0, SR, 3)


@pytest.fixture(scope="module")
def mel_ref(reference_dir):
    return dict(np.load(reference_dir / "mel_ref.npz"))


@pytest.fixture(scope="module")
def power(speech):
    return audio.mel_power(speech)


# --- filterbank and power track -------------------------------------------------------------------


def test_filterbank_matches_independent_htk_triangles():
    bank = audio.mel_filterbank()
    assert bank.shape == (513, 64) and bank.dtype == np.float32
    np.testing.assert_allclose(bank, reference_filterbank(), atol=1e-6)
    assert not bank.flags.writeable  # cached: callers must not be able to change it for everyone


def test_mel_power_matches_float64_reference(speech, power):
    assert power.shape == (64, 1201) and power.dtype == np.float32
    assert np.abs(to_db(power) - to_db(reference_mel_power(speech))).max() < DB_TOL


def test_mel_power_matches_authors_torchaudio_output(power, mel_ref):
    assert power.shape == mel_ref["track_power"].shape
    diff = np.abs(to_db(power) - to_db(mel_ref["track_power"]))
    assert diff.max() < DB_TOL
    strong = mel_ref["track_power"] > 1e-4 * mel_ref["track_power"].max()
    assert diff[strong].max() < 0.002


@pytest.mark.parametrize("n", [0, 1, 100, 441, 512, 513, 1000])
def test_short_tracks(n):
    """Up to 512 samples reflect padding is impossible (torchaudio raises); zero padding is used."""
    wave = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    power = audio.mel_power(wave)
    assert power.shape == (64, 1 + n // 441)
    if n:
        np.testing.assert_allclose(power, reference_mel_power(wave), rtol=1e-3, atol=1e-6)
    else:
        assert not power.any()


def test_long_track_is_chunked_exactly():
    """Columns computed 60 s at a time equal one torch.stft over the whole track."""
    wave = np.random.default_rng(1).standard_normal(61 * SR + 123).astype(np.float32)
    power = audio.mel_power(wave)
    spec = torch.stft(
        torch.from_numpy(wave), N_FFT, HOP, WIN, torch.hann_window(WIN), center=True,
        pad_mode="reflect", return_complex=True,
    ).abs().pow(2)
    whole = (torch.from_numpy(np.array(audio.mel_filterbank())).T @ spec).numpy()
    assert power.shape == whole.shape == (64, 1 + len(wave) // HOP)
    np.testing.assert_allclose(power, whole, rtol=1e-5, atol=1e-6)


def test_other_sample_rates_are_resampled_first():
    def tone(sr):  # 2 s of 1.5 kHz
        return (0.3 * np.sin(2 * np.pi * 1500 * np.arange(2 * sr) / sr)).astype(np.float32)

    at_48k = audio.mel_power(tone(48000), sample_rate=48000)
    at_44k = audio.mel_power(tone(SR))
    assert at_48k.shape == at_44k.shape == (64, 201)
    band = at_44k[:, 100].argmax()
    inner = slice(10, -10)  # the resampler's filter edges aside
    assert np.abs(to_db(at_48k[band, inner]) - to_db(at_44k[band, inner])).max() < 0.1


def test_rejects_multichannel():
    with pytest.raises(ValueError):
        audio.mel_power(np.zeros((2, 1000), np.float32))


# --- windows --------------------------------------------------------------------------------------


def test_windows_match_authors_reference(power, mel_ref):
    windows = audio.mel_windows(power, mel_ref["centers"])
    assert windows.shape == (4, 1, 64, 1001) and windows.dtype == np.float32
    np.testing.assert_allclose(windows[:, 0], mel_ref["windows"], atol=5e-4)
    # And one at a time, from the public single-window call.
    for t, ref in zip(mel_ref["centers"], mel_ref["windows"]):
        np.testing.assert_allclose(audio.mel_window(power, t)[0], ref, atol=5e-4)


def test_reference_windows_are_centred_on_round_t_times_100(power, mel_ref):
    """Column 500 of each reference window is column round(t · 100) of the track: the windows one
    column either side do not match. (The reference centres are whole columns, so they say nothing
    about halfway cases; test_centre_column_rule pins those down.)"""
    assert audio.centre_columns(mel_ref["centers"]).tolist() == [0, 250, 600, 1199]
    for column, ref in zip([0, 250, 600, 1199], mel_ref["windows"]):
        np.testing.assert_allclose(reference_window(power, column)[0], ref, atol=5e-4)
        for wrong in (column - 1, column + 1):
            assert np.abs(reference_window(power, wrong)[0] - ref).max() > 0.1


def test_centre_column_rule():
    # round(t · 100), and exactly halfway (sample 441k + 220.5 does not exist: 220 is nearer k).
    times = [0.0, 0.004, 0.006, 0.01, 2.5, -0.004, -0.006]
    assert audio.centre_columns(times).tolist() == [0, 0, 1, 1, 250, 0, -1]
    k = 37
    assert audio.centre_columns((441 * k + 220) / SR) == k
    assert audio.centre_columns((441 * k + 221) / SR) == k + 1
    assert audio.centre_columns(0.125) == 12  # t · 100 = 12.5: the earlier column
    assert audio.centre_columns(5.005) == 500  # 120 frames at 23.976 fps, another exact half
    # Float noise: 0.29 · 100 = 28.999999999999996 and 4.35 · 100 = 434.99999999999994.
    assert audio.centre_columns([0.29, 0.57, 4.35, 8.7]).tolist() == [29, 57, 435, 870]


@pytest.mark.parametrize("t", [0.0, 0.3, 4.5, 6.0, 11.5, 12.0, 16.9, 17.2, -3.0, -6.0, 40.0])
def test_windows_match_written_out_reference(power, t):
    """Including windows that hang over either end of the track or lie entirely outside it."""
    column = int(audio.centre_columns(t))
    expected = reference_window(power, column)
    np.testing.assert_allclose(audio.mel_window(power, t), expected, atol=1e-5)


def test_batched_windows_equal_single_ones(power):
    track = audio.LogMelTrack(power)
    times = np.linspace(-1, 13, 57)
    batch = audio.mel_windows(track, times)
    for t, window in zip(times, batch):
        np.testing.assert_array_equal(window, audio.mel_window(power, t))


def test_silent_track_gives_the_formula_constant():
    power = audio.mel_power(np.zeros(3 * SR, np.float32))
    assert not power.any()
    window = audio.mel_window(power, 1.5)
    np.testing.assert_allclose(window, (-100 + 14.8) / 19.895, rtol=1e-6)


def test_window_shape_errors():
    with pytest.raises(ValueError):
        audio.mel_windows(np.zeros((40, 100), np.float32), [0.0])


# --- torchaudio itself, where it imports (not with this project's CPU torch) ----------------------


def test_matches_torchaudio_itself(speech):
    torchaudio = pytest.importorskip("torchaudio")
    transform = torchaudio.transforms.MelSpectrogram(
        sample_rate=SR, n_fft=N_FFT, win_length=WIN, hop_length=HOP, n_mels=MELS,
        window_fn=torch.hann_window,
    )
    theirs = transform(torch.from_numpy(speech)[None])[0].numpy()
    ours = audio.mel_power(speech)
    assert np.abs(to_db(ours) - to_db(theirs)).max() < DB_TOL
    np.testing.assert_allclose(
        audio.mel_filterbank(),
        torchaudio.functional.melscale_fbanks(513, 0.0, SR / 2, MELS, SR, None, "htk").numpy(),
        atol=1e-6,
    )
    to_db_80 = torchaudio.transforms.AmplitudeToDB("power", 80)
    for t in (0.0, 3.3, 11.99):
        column = int(audio.centre_columns(t))
        padded = np.zeros((MELS, theirs.shape[1] + 2 * COLS), np.float32)
        padded[:, COLS : COLS + theirs.shape[1]] = theirs
        first = column - COLS // 2 + COLS  # padded index of the window's first column
        window = torch.from_numpy(padded[None, :, first : first + COLS])
        expected = ((to_db_80(window) + 14.8) / 19.895).numpy()
        np.testing.assert_allclose(audio.mel_window(ours, t), expected, atol=5e-4)


def test_every_silent_window_is_the_one_constant_input():
    """Windows of digital silence, inside the track, at its edges and past its end, are all equal to the
    constant input whose float32 features an int8 export stores (so none of them gets int8 features)."""
    from tsav_deploy.export.int8 import constant_inputs

    track = audio.LogMelTrack(audio.mel_power(np.zeros(12 * 44_100, np.float32)))
    constant = constant_inputs()["spec"][0]
    for window in track.windows([0.0, 3.0, 6.0, 11.9, 30.0]):
        np.testing.assert_array_equal(window, constant)
