"""An independent transcription of upstream Wav2Lip for the tests: the forward pass (table-driven,
reference/wav2lip.md §1), audio.py's mel (librosa 0.7 code paths written out, §2), and inference.py's
frame loop (datagen's crop + mask + model + paste, §1.8, §2.4, §3.4).

It shares no code with daemon/worker/engines/wav2lip: weights are read by key from a state dict and run
through F.conv2d / F.batch_norm in the order the reference tables give; cv2.resize is replaced by a
bilinear resize with INTER_LINEAR's pixel-centre convention.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import lfilter

# (key prefix, cin, cout, kernel, stride, padding, residual)
FACE_ENCODER: list[list[tuple[Any, ...]]] = [
    [("0.0", 6, 16, 7, 1, 3, False)],
    [("1.0", 16, 32, 3, 2, 1, False), ("1.1", 32, 32, 3, 1, 1, True), ("1.2", 32, 32, 3, 1, 1, True)],
    [("2.0", 32, 64, 3, 2, 1, False), ("2.1", 64, 64, 3, 1, 1, True), ("2.2", 64, 64, 3, 1, 1, True),
     ("2.3", 64, 64, 3, 1, 1, True)],
    [("3.0", 64, 128, 3, 2, 1, False), ("3.1", 128, 128, 3, 1, 1, True), ("3.2", 128, 128, 3, 1, 1, True)],
    [("4.0", 128, 256, 3, 2, 1, False), ("4.1", 256, 256, 3, 1, 1, True), ("4.2", 256, 256, 3, 1, 1, True)],
    [("5.0", 256, 512, 3, 2, 1, False), ("5.1", 512, 512, 3, 1, 1, True)],
    [("6.0", 512, 512, 3, 1, 0, False), ("6.1", 512, 512, 1, 1, 0, False)],
]
AUDIO_ENCODER: list[tuple[Any, ...]] = [
    ("0", 1, 32, 3, 1, 1, False), ("1", 32, 32, 3, 1, 1, True), ("2", 32, 32, 3, 1, 1, True),
    ("3", 32, 64, 3, (3, 1), 1, False), ("4", 64, 64, 3, 1, 1, True), ("5", 64, 64, 3, 1, 1, True),
    ("6", 64, 128, 3, 3, 1, False), ("7", 128, 128, 3, 1, 1, True), ("8", 128, 128, 3, 1, 1, True),
    ("9", 128, 256, 3, (3, 2), 1, False), ("10", 256, 256, 3, 1, 1, True),
    ("11", 256, 512, 3, 1, 0, False), ("12", 512, 512, 1, 1, 0, False),
]
# decoder block: (first layer: prefix, cin, cout, k, s, p, output_padding or None for a plain conv), n res
DECODER: list[tuple[Any, ...]] = [
    (("0.0", 512, 512, 1, 1, 0, None), 0, 512),
    (("1.0", 1024, 512, 3, 1, 0, 0), 1, 512),
    (("2.0", 1024, 512, 3, 2, 1, 1), 2, 512),
    (("3.0", 768, 384, 3, 2, 1, 1), 2, 384),
    (("4.0", 512, 256, 3, 2, 1, 1), 2, 256),
    (("5.0", 320, 128, 3, 2, 1, 1), 2, 128),
    (("6.0", 160, 64, 3, 2, 1, 1), 2, 64),
]


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every state-dict key and shape the reference tables imply."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(prefix: str, cin: int, cout: int, k: int, transpose: bool = False) -> None:
        shapes[f"{prefix}.conv_block.0.weight"] = (cin, cout, k, k) if transpose else (cout, cin, k, k)
        shapes[f"{prefix}.conv_block.0.bias"] = (cout,)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.conv_block.1.{name}"] = (cout,)
        shapes[f"{prefix}.conv_block.1.num_batches_tracked"] = ()

    for block in FACE_ENCODER:
        for p, cin, cout, k, _s, _p, _r in block:
            conv(f"face_encoder_blocks.{p}", cin, cout, k)
    for p, cin, cout, k, _s, _p, _r in AUDIO_ENCODER:
        conv(f"audio_encoder.{p}", cin, cout, k)
    for i, ((p, cin, cout, k, _s, _p, op), n_res, ch) in enumerate(DECODER):
        conv(f"face_decoder_blocks.{p}", cin, cout, k, transpose=op is not None)
        for j in range(1, n_res + 1):
            conv(f"face_decoder_blocks.{i}.{j}", ch, ch, 3)
    conv("output_block.0", 80, 32, 3)
    shapes["output_block.1.weight"] = (3, 32, 1, 1)
    shapes["output_block.1.bias"] = (3,)
    return shapes


def _layer(sd: dict[str, torch.Tensor], prefix: str, x: torch.Tensor, stride: Any, padding: int,
           residual: bool = False, output_padding: int | None = None) -> torch.Tensor:
    w, b = sd[f"{prefix}.conv_block.0.weight"], sd[f"{prefix}.conv_block.0.bias"]
    if output_padding is None:
        y = F.conv2d(x, w, b, stride, padding)
    else:
        y = F.conv_transpose2d(x, w, b, stride, padding, output_padding)
    bn = f"{prefix}.conv_block.1"
    y = F.batch_norm(y, sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"], sd[f"{bn}.weight"],
                     sd[f"{bn}.bias"], training=False, eps=1e-5)
    if residual:
        y = y + x
    return F.relu(y)


def forward(sd: dict[str, torch.Tensor], audio: torch.Tensor, faces: torch.Tensor,
            dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(B,1,80,16) mel + (B,6,96,96) faces → (B,3,96,96), in float64 for a tight reference."""
    sd = {k: v.to(dtype) for k, v in sd.items()}
    a = audio.to(dtype)
    for p, _cin, _cout, _k, s, pad, res in AUDIO_ENCODER:
        a = _layer(sd, f"audio_encoder.{p}", a, s, pad, res)
    skips, f = [], faces.to(dtype)
    for block in FACE_ENCODER:
        for p, _cin, _cout, _k, s, pad, res in block:
            f = _layer(sd, f"face_encoder_blocks.{p}", f, s, pad, res)
        skips.append(f)
    x = a
    for i, ((p, _cin, _cout, _k, s, pad, op), n_res, _ch) in enumerate(DECODER):
        x = _layer(sd, f"face_decoder_blocks.{p}", x, s, pad, output_padding=op)
        for j in range(1, n_res + 1):
            x = _layer(sd, f"face_decoder_blocks.{i}.{j}", x, 1, 1, residual=True)
        x = torch.cat([x, skips.pop()], dim=1)
    x = _layer(sd, "output_block.0", x, 1, 1)
    x = F.conv2d(x, sd["output_block.1.weight"], sd["output_block.1.bias"])
    return torch.sigmoid(x)


# ---- audio.py: librosa 0.7.0 `filters.mel`, `core.stft`, Wav2Lip `audio.py`, written out by hand ----


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


# ---- inference.py's frame loop ----


def bilinear(img: np.ndarray, h: int, w: int) -> np.ndarray:
    sh, sw = img.shape[:2]
    ys = np.clip((np.arange(h) + 0.5) * sh / h - 0.5, 0, sh - 1)
    xs = np.clip((np.arange(w) + 0.5) * sw / w - 0.5, 0, sw - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, sh - 1), np.minimum(x0 + 1, sw - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    img = img.astype(np.float64)
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bottom = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def resize_u8(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """cv2.resize(img, (w, h)) of a uint8 image: INTER_LINEAR, rounded and saturated back to uint8."""
    return np.clip(np.round(bilinear(img, h, w)), 0, 255).astype(np.uint8)


def inference(sd: dict[str, torch.Tensor], frames_bgr: np.ndarray, wav: np.ndarray, fps: float,
              box: tuple[int, int, int, int], *, window_shift: int = 0, rgb: bool = False,
              dtype: torch.dtype = torch.float64) -> np.ndarray:
    """inference.py with `--box top bottom left right` on decoded BGR frames: one output frame per mel chunk.

    `window_shift` and `rgb` deliberately break it (frame i fed chunk i+shift; RGB instead of BGR into
    the model) for the tests' negative controls; those may run in float32 (`dtype`) to save time.
    """
    chunks = ref_chunks(ref_melspectrogram(wav), fps)
    frames = frames_bgr[:len(chunks)]  # full_frames[:len(mel_chunks)]
    y1, y2, x1, x2 = box  # y1, y2, x1, x2 = args.box
    out = []
    for i in range(len(chunks)):
        frame = frames[i % len(frames)].copy()  # datagen: idx = i % len(frames)
        face = resize_u8(frame[y1:y2, x1:x2], 96, 96)
        if rgb:
            face = face[..., ::-1]
        masked = face.copy()
        masked[96 // 2:] = 0
        faces = np.concatenate([masked, face], axis=2)[None] / 255.0  # (1,96,96,6) float64
        mel = chunks[min(len(chunks) - 1, i + window_shift)]
        audio = torch.from_numpy(np.ascontiguousarray(mel.reshape(1, 80, 16, 1).transpose(0, 3, 1, 2)))
        pred = forward(sd, audio, torch.from_numpy(faces.transpose(0, 3, 1, 2).copy()), dtype)
        pred = pred.double().numpy().transpose(0, 2, 3, 1)[0] * 255.0
        if rgb:
            pred = pred[..., ::-1]
        frame[y1:y2, x1:x2] = resize_u8(pred.astype(np.uint8), y2 - y1, x2 - x1)  # astype truncates
        out.append(frame)
    return np.stack(out)
