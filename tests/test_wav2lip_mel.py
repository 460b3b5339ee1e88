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


@pytest.mark.parametrize("seconds", [0.05, 1.0, 60.0])
def test_the_engines_mel_filled_in_blocks_gives_the_windows_of_the_whole_one(seconds: float) -> None:
    from daemon.worker.engines.wav2lip.engine import MelFeatures

    wav = speechlike(seconds, seed=5)
    whole = mel.pad_to_window(mel.melspectrogram(wav))
    frames = max(1, round(seconds * 25))
    features = MelFeatures(wav, 25.0, frames, "cpu")
    features.wait()
    assert features.mel.shape == whole.shape and np.array_equal(features.mel.numpy(), whole)
    idx = np.arange(frames + 2)  # past the end: the final window
    starts = mel.window_starts(whole.shape[1], 25.0, frames)[np.minimum(idx, frames - 1)]
    expected = np.stack([whole[:, s:s + 16] for s in starts])[:, None]
    assert np.array_equal(features.windows(idx).numpy(), expected)


def test_the_first_frames_windows_come_before_the_rest_of_the_mel_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from daemon.worker.engines.wav2lip.engine import MelFeatures

    gate, real = threading.Event(), mel.mel_blocks

    def held(wav: np.ndarray):  # type: ignore[no-untyped-def]
        for k, item in enumerate(real(wav)):
            if k == 1:
                assert gate.wait(30)
            yield item

    monkeypatch.setattr(mel, "mel_blocks", held)
    wav = speechlike(60.0, seed=6)
    features = MelFeatures(wav, 25.0, 1500, "cpu")
    first = features.windows(np.arange(64))  # only the first block is made: these frames need no more
    assert first.shape == (64, 1, 80, 16)
    late: list[object] = []
    waiter = threading.Thread(target=lambda: late.append(features.windows(np.array([1499]))))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and not late  # the last frame's window waits for its block
    gate.set()
    waiter.join(30)
    assert not waiter.is_alive() and late[0].shape == (1, 1, 80, 16)  # type: ignore[attr-defined]
    whole = mel.melspectrogram(wav)
    assert np.array_equal(first.numpy()[:, 0], np.stack([whole[:, s:s + 16] for s in features.starts[:64]]))


def test_a_failure_while_the_mel_is_made_is_raised_where_the_windows_are_asked_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.worker.engines.wav2lip.engine import MelFeatures

    def broken(wav: np.ndarray):  # type: ignore[no-untyped-def]
        raise MemoryError("no room for the mel")
        yield  # a generator

    monkeypatch.setattr(mel, "mel_blocks", broken)
    features = MelFeatures(speechlike(2.0), 25.0, 50, "cpu")
    with pytest.raises(MemoryError, match="no room"):
        features.windows(np.arange(8))
