"""The audio front-end against an independent NumPy transcription of librosa 0.7's code paths."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from wav2lip_reference import ref_chunks, ref_mel_filters, ref_melspectrogram

from daemon.worker.engines.wav2lip import mel

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


def test_long_audio_read_in_blocks_equals_the_whole_array_path(monkeypatch: pytest.MonkeyPatch) -> None:
    wav = speechlike(40.0, seed=4)
    wav[[0, 5, 123_456, -1]] = [np.nan, np.inf, -np.inf, np.nan]  # sanitised the same way in both paths
    blocks = mel.melspectrogram(wav)
    monkeypatch.setattr(mel, "_WHOLE", wav.size)
    assert np.array_equal(blocks, mel.melspectrogram(wav))


def test_memory_for_the_mel_does_not_grow_with_the_speech_length(tmp_path: Path) -> None:
    """Invariant 7: a memory-mapped 10-minute track costs what a 2-minute one does, beyond the output
    (measured: 78 MB both; the whole-array float64 copies made it 302 MB at 10 minutes, ~0.8 GB at 30)."""
    import tracemalloc

    peaks = {}
    for minutes in (2, 10):
        path = tmp_path / f"speech{minutes}.f32"
        tone = np.sin(np.arange(16000 * 60 * minutes, dtype=np.float32) * np.float32(0.05))
        tone.tofile(path)
        del tone
        mapped = np.memmap(path, dtype=np.float32, mode="r")
        tracemalloc.start()
        out = mel.melspectrogram(mapped)
        peaks[minutes] = tracemalloc.get_traced_memory()[1] - out.nbytes
        tracemalloc.stop()
        del mapped, out
    assert peaks[10] < peaks[2] + 4_000_000, peaks  # whole float64 copies: + 3 x 61 MB
