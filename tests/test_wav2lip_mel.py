"""The audio front-end against an independent NumPy transcription of librosa 0.7's code paths."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import lfilter

from daemon.worker.engines.wav2lip import mel

# ---- reference: librosa 0.7.0 `filters.mel`, `core.stft`, Wav2Lip `audio.py`, written out by hand ----


def ref_hz_to_mel(freq: float) -> float:
    f_sp = 200.0 / 3
    if freq < 1000.0:
        return freq / f_sp
    return 1000.0 / f_sp + np.log(freq / 1000.0) / (np.log(6.4) / 27.0)


def ref_mel_to_hz(m: float) -> float:
    f_sp = 200.0 / 3
    min_log_mel = 1000.0 / f_sp
    if m < min_log_mel:
        return f_sp * m
    return 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - min_log_mel))


def ref_mel_filters(sr: int = 16000, n_fft: int = 800, n_mels: int = 80, fmin: float = 55,
                    fmax: float = 7600) -> np.ndarray:
    fftfreqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    lo, hi = ref_hz_to_mel(fmin), ref_hz_to_mel(fmax)
    mel_f = np.array([ref_mel_to_hz(m) for m in np.linspace(lo, hi, n_mels + 2)])
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels])  # norm=1 (Slaney area normalisation)
    return weights * enorm[:, np.newaxis]


def ref_stft(y: np.ndarray, n_fft: int = 800, hop: int = 200) -> np.ndarray:
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # scipy.signal.get_window('hann', fftbins=True)
    y = np.pad(y, n_fft // 2, mode="reflect")  # librosa 0.7 default pad_mode
    n_frames = 1 + (len(y) - n_fft) // hop
    out = np.empty((1 + n_fft // 2, n_frames), dtype=np.complex64)
    for t in range(n_frames):
        out[:, t] = np.fft.rfft(window * y[t * hop:t * hop + n_fft])
    return out


def ref_melspectrogram(wav: np.ndarray) -> np.ndarray:
    y = lfilter([1, -0.97], [1], wav)
    spec = np.abs(ref_stft(y))
    m = np.dot(ref_mel_filters(), spec)
    s = 20 * np.log10(np.maximum(1e-5, m)) - 20
    min_level_db = -100
    return np.clip((2 * 4.0) * ((s - min_level_db) / (-min_level_db)) - 4.0, -4.0, 4.0)


def ref_chunks(m: np.ndarray, fps: float) -> list[np.ndarray]:
    chunks, mult, i = [], 80.0 / fps, 0
    while True:
        start = int(i * mult)
        if start + 16 > len(m[0]):
            chunks.append(m[:, len(m[0]) - 16:])
            break
        chunks.append(m[:, start:start + 16])
        i += 1
    return chunks


# ---- tests ----


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 16000) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None) ** 0.5
    return (0.3 * voiced * envelope + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def test_mel_filterbank_matches_reference_slaney_filters() -> None:
    assert mel.mel_basis().shape == (80, 401)
    assert np.max(np.abs(mel.mel_basis() - ref_mel_filters())) < 1e-6


@pytest.mark.parametrize("seconds", [0.013, 0.5, 3.7])
def test_melspectrogram_matches_librosa_07_semantics(seconds: float) -> None:
    wav = speechlike(seconds)
    ours, ref = mel.melspectrogram(wav), ref_melspectrogram(wav)
    assert ours.shape == ref.shape == (80, 1 + len(wav) // 200)
    assert np.max(np.abs(ours - ref)) <= 1e-4


def test_melspectrogram_of_espeak_speech_matches_reference(tmp_path: Path) -> None:
    wav_path = tmp_path / "s.wav"
    subprocess.run(["espeak-ng", "-w", str(wav_path), "the quick brown fox jumps over the lazy dog"],
                   check=True, capture_output=True)
    raw = subprocess.run(["sox", str(wav_path), "-t", "f32", "-r", "16000", "-c", "1", "-"],
                         check=True, capture_output=True).stdout
    wav = np.frombuffer(raw, dtype=np.float32)
    assert wav.size > 16000
    ours, ref = mel.melspectrogram(wav), ref_melspectrogram(wav)
    assert np.max(np.abs(ours - ref)) <= 1e-4
    assert ours.min() >= -4 and ours.max() <= 4 and ours.max() > 0  # real speech reaches well above silence


def test_long_audio_spans_several_stft_blocks_without_seams() -> None:
    wav = speechlike(60.0, seed=3)  # 4801 frames: more than one 4096-frame block
    assert np.max(np.abs(mel.melspectrogram(wav) - ref_melspectrogram(wav))) <= 1e-4


def test_silence_maps_to_minus_four_and_nan_inf_are_sanitized() -> None:
    assert np.all(mel.melspectrogram(np.zeros(8000, np.float32)) == -4.0)
    wav = speechlike(1.0)
    dirty = wav.copy()
    dirty[[10, 500, 9000]] = [np.nan, np.inf, -np.inf]
    out = mel.melspectrogram(dirty)
    assert np.isfinite(out).all()
    clean = wav.copy()
    clean[[10, 500, 9000]] = [0.0, 1.0, -1.0]
    assert np.array_equal(out, mel.melspectrogram(clean))


@pytest.mark.parametrize("fps", [25.0, 29.97, 30.0, 24.0])
@pytest.mark.parametrize("seconds", [0.1, 0.2, 1.0, 2.345])
def test_frame_windows_follow_inference_py_including_final_window(fps: float, seconds: float) -> None:
    m = mel.pad_to_window(mel.melspectrogram(speechlike(seconds)))
    chunks = ref_chunks(m, fps)
    count = mel.reference_frame_count(m.shape[1], fps)
    assert count == len(chunks)
    starts = mel.window_starts(m.shape[1], fps, count + 3)  # frames past the end reuse the final window
    for i, start in enumerate(starts):
        expected = chunks[min(i, count - 1)]
        assert np.array_equal(m[:, start:start + 16], expected)


def test_audio_shorter_than_one_window_is_padded_with_silence() -> None:
    m = mel.pad_to_window(mel.melspectrogram(speechlike(0.05)))
    assert m.shape == (80, 16)
    assert np.all(m[:, 5:] == mel.SILENCE)
