"""tsav_deploy.inputs.windows against an independent float64 NumPy implementation, the authors' figures
(torchaudio 2.11 output in tests/data/mel_track_power.npz) and torchaudio itself where it
imports."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsav_deploy.inputs import windows as audio

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


def reference_spec_window(wave: np.ndarray, t: float) -> np.ndarray:
    """The authors' ``Aff2CompDataset.__getitem__`` audio part written out in float64: torchaudio.load
    of ``num_frames=min(441000, max(int(t·sr), 882))`` samples from ``offset=max(int(t·sr − 441000 +
    220500), 0)`` (fewer at the end of the file), MelSpectrogram of that segment alone, right-aligned
    into 1001 zero-power columns when shorter than 10 s, AmplitudeToDB('power', 80), Normalize."""
    x = t * SR
    offset = max(int(x - 441000 + 220500), 0)
    segment = wave[offset : offset + min(441000, max(int(x), int(0.02 * SR)))].astype(np.float64)
    p = np.zeros((MELS, COLS))
    if len(segment):
        mel = reference_mel_power(segment)
        p[:, COLS - mel.shape[1] :] = mel
    db = 10 * np.log10(np.maximum(p, 1e-10))
    db = np.maximum(db, db.max() - 80)
    return ((db + 14.8) / 19.895)[None]


def to_db(p) -> np.ndarray:
    return 10 * np.log10(np.maximum(np.asarray(p, dtype=np.float64), 1e-10))


# float32 STFTs (ours, torchaudio's) differ from float64 by up to ~0.01 dB in the weakest bins.
DB_TOL = 0.02


@pytest.fixture(scope="module")
def speech(reference):
    return reference.synthetic_speechlike(12.0, SR, 3)


@pytest.fixture(scope="module")
def mel_ref(reference):
    return reference.load_npz("mel_track_power.npz")


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


# --- the authors' window of each frame --------------------------------------------------------------

# The times: the start (past only), 5-10 s (segment [t − 5, 2t − 5]), 10 s and beyond (centred).
TIMES = (0.0, 0.001, 0.02, 2.5, 4.99, 5.0, 7.3, 9.99, 10.0, 12.3, 12.345, 13.0)
NORMALIZED_TOL = 1e-3


@pytest.fixture(scope="module")
def long_speech(reference):
    return reference.synthetic_speechlike(25.0, SR, 3)


@pytest.mark.parametrize("t", TIMES)
def test_windows_follow_the_authors_rule(long_speech, t):
    window = audio.spec_window(long_speech, t)
    assert window.shape == (1, 64, 1001) and window.dtype == np.float32
    assert np.abs(window - reference_spec_window(long_speech, t)).max() <= NORMALIZED_TOL


def test_window_ends_of_a_real_recording(media_dir):
    """The last 5 s of a real track (segments cut short by its end, right-aligned) and its very end."""
    from tsav_deploy.media.audio import read_audio

    wave, _ = read_audio(media_dir / "stage_and_audience.mp4")
    end = len(wave) / SR
    assert end > 9 and np.abs(wave).max() > 0.05  # music all through
    for t in (end - 4.9, end - 2.5, end - 0.5, end - 0.01, end, end + 3.0, end + 6.0):
        assert np.abs(audio.spec_window(wave, t) - reference_spec_window(wave, t)).max() <= NORMALIZED_TOL, t


def test_where_the_frame_sits_in_its_window(long_speech):
    """Column of the frame's own sample: the last before 5 s, 500 from 10 s on, 2t − 5 s between;
    shortened segments are right-aligned, so the left columns are the silent floor."""
    starts, stops = audio.segment_bounds([2.5, 7.3, 12.3, 24.0], len(long_speech))
    assert starts.tolist() == [0, int(7.3 * SR) - 220500, int(12.3 * SR) - 220500, int(24.0 * SR) - 220500]
    assert stops.tolist() == [int(2.5 * SR), starts[1] + int(7.3 * SR), starts[2] + 441000, len(long_speech)]
    window = audio.spec_window(long_speech, 2.5)[0]
    floor = window.max() - 80 / 19.895  # the window's maximum − 80 dB, normalized
    assert np.all(np.abs(window[:, : 1001 - 251] - floor) < 1e-5)  # 251 columns of sound, right-aligned
    assert np.median(window[:, 1001 - 251 :]) > floor + 1


def test_times_off_the_10_ms_grid_get_their_own_columns(long_speech):
    """4.5 ms off the grid is not the nearest grid window: the frame's own sample is the centre."""
    off, on = audio.spec_window(long_speech, 12.345), audio.spec_window(long_speech, 12.35)
    assert np.median(np.abs(off - on)) > 0.05
    assert np.abs(off - reference_spec_window(long_speech, 12.345)).max() <= NORMALIZED_TOL


def test_cached_columns_equal_whole_segment_transforms(long_speech):
    """SpecWindows reuses interior columns across frames of one phase; in any order, the windows
    equal one transform of each segment (here in float32, computed one window at a time)."""
    rng = np.random.default_rng(0)
    times = np.concatenate([audio.authors_timestamps(np.arange(0, 25, 1 / 29.97)), rng.uniform(0, 26, 20)])
    order = rng.permutation(len(times))[:80]
    batch = audio.SpecWindows(long_speech).windows(times[order])
    for t, window in zip(times[order], batch):
        start, stop = (int(v[0]) for v in audio.segment_bounds([t], len(long_speech)))
        power = np.zeros((64, 1001), np.float64)
        if stop > start:
            segment = audio.mel_power(long_speech[start:stop])
            power[:, 1001 - segment.shape[1] :] = segment
        db = 10 * np.log10(np.maximum(power, 1e-10))
        expected = (np.maximum(db, db.max() - 80) + 14.8) / 19.895
        np.testing.assert_allclose(window[0], expected, atol=2e-5)
        np.testing.assert_array_equal(window, audio.spec_window(long_speech, t))


def test_16_bit_samples_read_as_torchaudio_reads_a_wav(long_speech):
    pcm = np.clip(np.rint(long_speech * 32768), -32768, 32767).astype(np.int16)
    as_float = pcm.astype(np.float32) / 32768
    for t in (0.5, 7.3, 12.3):
        np.testing.assert_array_equal(audio.spec_window(pcm, t), audio.spec_window(as_float, t))


def test_authors_timestamps_are_whole_milliseconds_rounded_half_up():
    times = np.array([0.0, 1 / 29.97, 1001 / 24000, 0.0625, 0.0005, 10.0104])
    assert audio.authors_timestamps(times).tolist() == [0.0, 0.033, 0.042, 0.063, 0.001, 10.01]


def test_every_silent_window_is_the_one_constant_input():
    """Digital silence at any point, with segments of any length (the start, the middle, past the
    end of the track), and no audio at all give one window, the constant input whose float32
    features an int8 export stores (so none of them gets int8 features)."""
    from tsav_deploy.artifacts.manifest import constant_inputs

    constant = constant_inputs()["spec"][0]
    np.testing.assert_allclose(constant, (-100 + 14.8) / 19.895, rtol=1e-6)
    silence = np.zeros(12 * SR, np.float32)
    for window in audio.spec_windows(silence, [0.0, 0.005, 3.0, 6.0, 11.9, 30.0]):
        np.testing.assert_array_equal(window, constant)
    np.testing.assert_array_equal(audio.spec_window(np.zeros(0, np.float32), 4.0), constant)


def test_window_input_errors():
    with pytest.raises(ValueError):
        audio.spec_window(np.zeros((2, 1000), np.float32), 0.0)
    with pytest.raises(ValueError):
        audio.SpecWindows(np.zeros((1000, 2), np.int16))


# --- torchaudio itself, where it imports (not with this project's CPU torch) ----------------------


def test_matches_torchaudio_itself(long_speech):
    """The authors' __getitem__ with torchaudio's own transforms (the GPU machine has torchaudio)."""
    torchaudio = pytest.importorskip("torchaudio")
    transform = torchaudio.transforms.MelSpectrogram(
        sample_rate=SR,
        n_fft=N_FFT,
        win_length=WIN,
        hop_length=HOP,
        n_mels=MELS,
        window_fn=torch.hann_window,
    )
    theirs = transform(torch.from_numpy(long_speech)[None])[0].numpy()
    assert np.abs(to_db(audio.mel_power(long_speech)) - to_db(theirs)).max() < DB_TOL
    np.testing.assert_allclose(
        audio.mel_filterbank(),
        torchaudio.functional.melscale_fbanks(513, 0.0, SR / 2, MELS, SR, None, "htk").numpy(),
        atol=1e-6,
    )
    to_db_80 = torchaudio.transforms.AmplitudeToDB("power", 80)
    wave = torch.from_numpy(long_speech)[None]
    for t in TIMES + (22.0, 24.9):
        offset = max(int(t * SR - 441000 + 220500), 0)
        segment = wave[:, offset : offset + min(441000, max(int(t * SR), 882))]
        features = transform(segment)
        if segment.shape[1] < 441000:
            padded = torch.zeros((1, MELS, COLS))
            padded[:, :, -features.shape[2] :] = features
            features = padded
        expected = ((to_db_80(features) + 14.8) / 19.895).numpy()
        assert np.abs(audio.spec_window(long_speech, t) - expected).max() <= NORMALIZED_TOL, t


def test_the_silent_flag_marks_exactly_the_silent_windows(long_speech):
    """frame_silent is set on exactly the windows equal to the constant silent window: digital
    silence inside a track, around it, past its end."""
    from tsav_deploy.artifacts.manifest import constant_inputs

    wave = long_speech.copy()
    wave[int(3 * SR) : int(17 * SR)] = 0  # 14 s of digital silence in the middle
    spec = audio.SpecWindows(wave)
    times = np.arange(0.0, 30.0, 0.37)
    constant = constant_inputs()["spec"][0]
    equal = [np.array_equal(w, constant) for w in spec.frame_windows(times)]
    assert spec.frame_silent(times).tolist() == equal
    assert 0 < sum(equal) < len(equal)
