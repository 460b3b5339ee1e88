"""Wav2Lip's audio front-end (reference/wav2lip.md §2) without librosa, and the frame ↔ mel-window map.

Equal to `audio.melspectrogram` under librosa 0.7 (reflect-padded centred STFT, Slaney mel): later
librosa pads with zeros, which shifts the edges the model was trained on. The STFT, and for long audio
the pre-emphasis and the padding too, run in blocks of frames, so memory stays flat for long audio; the
engine fills its device copy block by block while the job renders (engine.MelFeatures).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN, FMAX = 55.0, 7600.0
PREEMPHASIS = 0.97
MEL_STEP = 16  # columns per video frame window
COLS_PER_SECOND = SAMPLE_RATE / HOP  # 80
SILENCE = -4.0  # what a column of silence normalises to
_BLOCK = 4096  # STFT frames per block
_FIRST_BLOCK = 256  # STFT frames of the first block (3.2 s of speech, the first 80 frames' windows)
_WHOLE = 16 * SAMPLE_RATE  # up to this many samples the signal is prepared whole (it is short)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's auditory toolbox scale: linear to 1 kHz, logarithmic above."""
    linear = hz / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = mel * (200.0 / 3)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log, linear)


def mel_basis() -> np.ndarray:
    """(80, 401) triangular filters 55–7600 Hz, each scaled to unit area (Slaney norm)."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(FMIN)), _hz_to_mel(np.array(FMAX)), N_MELS + 2))
    freqs = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    basis = np.stack([np.interp(freqs, edges[i:i + 3], [0.0, 1.0, 0.0], left=0.0, right=0.0)
                      for i in range(N_MELS)])
    scaled: np.ndarray = (basis * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)
    return scaled


def sanitize(wav: np.ndarray) -> np.ndarray:
    """float64 mono with NaN → 0 and ±inf → ±1 (a TTS track with NaN would otherwise poison the mel)."""
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    return np.nan_to_num(wav, nan=0.0, posinf=1.0, neginf=-1.0)


def melspectrogram(wav16k: np.ndarray) -> np.ndarray:
    """(80, 1 + len // 200) float32 in [-4, 4] for 16 kHz mono samples (a memory map is read in blocks)."""
    out = np.empty((N_MELS, columns(wav16k)), dtype=np.float32)
    for start, block in mel_blocks(wav16k):
        out[:, start:start + block.shape[1]] = block
    return out


def columns(wav16k: np.ndarray) -> int:
    """Mel columns (STFT frames) of these samples."""
    return 1 + max(np.asarray(wav16k).size, 2) // HOP


def mel_blocks(wav16k: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """melspectrogram in order, a block of columns at a time: (first column, (80, n) float32). The first
    block is _FIRST_BLOCK columns, so a job's first frames have their windows before the rest is done."""
    samples = np.asarray(wav16k).reshape(-1)
    n = columns(samples)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WIN) / WIN)  # periodic Hann
    basis = mel_basis().astype(np.float64)
    whole = _whole(samples) if samples.size <= _WHOLE else None
    cuts = [0, *range(min(n, _FIRST_BLOCK), n, _BLOCK), n]
    for start, stop in zip(cuts, cuts[1:], strict=False):
        # frame f covers padded samples f·HOP .. f·HOP + N_FFT, i.e. y[f·HOP − N_FFT/2 ..] reflected
        lo, hi = start * HOP, (stop - 1) * HOP + N_FFT
        segment = whole[lo:hi] if whole is not None else _padded(samples, lo, hi)
        block = np.lib.stride_tricks.sliding_window_view(segment, N_FFT)[::HOP]
        magnitude = np.abs(np.fft.rfft(block * window, axis=1))
        mel = magnitude @ basis.T
        db = 20.0 * np.log10(np.maximum(1e-5, mel)) - 20.0
        yield start, np.clip(0.08 * db + 4.0, -4.0, 4.0).T.astype(np.float32)


def _emphasised(x: np.ndarray) -> np.ndarray:
    """lfilter([1, -0.97], [1]) with zero initial state."""
    y = np.empty_like(x)
    y[0] = x[0]
    y[1:] = x[1:] - PREEMPHASIS * x[:-1]
    return y


def _whole(samples: np.ndarray) -> np.ndarray:
    """The whole pre-emphasised signal, reflect-padded by N_FFT/2 each side (short audio: numpy's
    reflect padding also covers pads longer than the signal)."""
    x = sanitize(samples)
    if x.size < 2:
        x = np.zeros(2)
    return np.pad(_emphasised(x), N_FFT // 2, mode="reflect")


def _padded(samples: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """`_whole(samples)[lo:hi]` of a signal longer than N_FFT, reading only the samples it needs: a
    30-minute track then holds one block's float64 samples, not three whole float64 copies (~0.7 GB)."""
    pad = N_FFT // 2
    # output index j ↔ signal index j − pad, reflected at both ends (no edge sample repeated)
    k = np.arange(lo - pad, hi - pad)
    last = samples.size - 1
    k = np.where(k < 0, -k, np.where(k > last, 2 * last - k, k))
    first, end = int(k.min()), int(k.max()) + 1
    start = max(0, first - 1)  # one sample before, for the pre-emphasis of `first`
    x = sanitize(samples[start:end])
    y = np.empty_like(x)
    y[1:] = x[1:] - PREEMPHASIS * x[:-1]
    y[0] = x[0] if start == 0 else 0.0  # y[0] of the whole signal is x[0]; otherwise never indexed
    picked: np.ndarray = y[k - start]
    return picked


def reference_frame_count(n_cols: int, fps: float) -> int:
    """How many frames inference.py makes from a mel of n_cols columns (its loop, in closed form)."""
    step = 80.0 / fps
    # first i whose window would run past the end; that i still gets the final (last 16) window
    i = max(0, int((n_cols - MEL_STEP) / step) - 2)  # every window before i fits: start the scan there
    while int(i * step) + MEL_STEP <= n_cols:
        i += 1
    return i + 1


def window_starts(n_cols: int, fps: float, n_frames: int) -> np.ndarray:
    """First mel column of each frame's 16-column window: int(i·80/fps), clamped to the final window."""
    starts = (np.arange(n_frames, dtype=np.float64) * (80.0 / fps)).astype(np.int64)
    last = max(0, n_cols - MEL_STEP)
    return np.minimum(starts, last)


def pad_to_window(mel: np.ndarray) -> np.ndarray:
    """Audio shorter than one window (0.2 s) is padded with silence columns."""
    if mel.shape[1] >= MEL_STEP:
        return mel
    pad = np.full((mel.shape[0], MEL_STEP - mel.shape[1]), SILENCE, dtype=mel.dtype)
    return np.concatenate([mel, pad], axis=1)
