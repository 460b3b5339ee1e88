"""The Wav2Lip generator, layer for layer as the official models/wav2lip.py (reference/wav2lip.md §1).

Attribute names reproduce the official state-dict keys exactly, so the released checkpoints load with
strict=True. Inputs: mel windows (B,1,80,16) and BGR faces in [0,1] (B,6,96,96), lower half of the
first three channels masked; output BGR in (0,1), (B,3,96,96).
"""

from __future__ import annotations

import torch
from torch import nn

PARAMETERS = 36_298_035
STATE_KEYS = 352
IMG_SIZE = 96
MEL_STEP = 16  # mel columns per video frame window
MEL_BINS = 80


class ConvBlock(nn.Module):
    """conv + BN (+ residual add) + ReLU: the official `models/conv.py::Conv2d`."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int | tuple[int, int], padding: int,
                 residual: bool = False) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x  # the add happens before the ReLU, as upstream
        activated: torch.Tensor = self.act(out)
        return activated


class UpBlock(nn.Module):
    """transposed conv + BN + ReLU: the official `models/conv.py::Conv2dTranspose`."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int,
                 output_padding: int = 0) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated: torch.Tensor = self.act(self.conv_block(x))
        return activated


def _res(channels: int, n: int) -> list[nn.Module]:
    return [ConvBlock(channels, channels, 3, 1, 1, residual=True) for _ in range(n)]


def _face_encoder() -> nn.ModuleList:
    return nn.ModuleList([
        nn.Sequential(ConvBlock(6, 16, 7, 1, 3)),
        nn.Sequential(ConvBlock(16, 32, 3, 2, 1), *_res(32, 2)),
        nn.Sequential(ConvBlock(32, 64, 3, 2, 1), *_res(64, 3)),
        nn.Sequential(ConvBlock(64, 128, 3, 2, 1), *_res(128, 2)),
        nn.Sequential(ConvBlock(128, 256, 3, 2, 1), *_res(256, 2)),
        nn.Sequential(ConvBlock(256, 512, 3, 2, 1), *_res(512, 1)),
        nn.Sequential(ConvBlock(512, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0)),
    ])


def _audio_encoder() -> nn.Sequential:
    return nn.Sequential(
        ConvBlock(1, 32, 3, 1, 1), *_res(32, 2),
        ConvBlock(32, 64, 3, (3, 1), 1), *_res(64, 2),
        ConvBlock(64, 128, 3, 3, 1), *_res(128, 2),
        ConvBlock(128, 256, 3, (3, 2), 1), *_res(256, 1),
        ConvBlock(256, 512, 3, 1, 0),
        ConvBlock(512, 512, 1, 1, 0),
    )


def _face_decoder() -> nn.ModuleList:
    return nn.ModuleList([
        nn.Sequential(ConvBlock(512, 512, 1, 1, 0)),
        nn.Sequential(UpBlock(1024, 512, 3, 1, 0), *_res(512, 1)),
        nn.Sequential(UpBlock(1024, 512, 3, 2, 1, 1), *_res(512, 2)),
        nn.Sequential(UpBlock(768, 384, 3, 2, 1, 1), *_res(384, 2)),
        nn.Sequential(UpBlock(512, 256, 3, 2, 1, 1), *_res(256, 2)),
        nn.Sequential(UpBlock(320, 128, 3, 2, 1, 1), *_res(128, 2)),
        nn.Sequential(UpBlock(160, 64, 3, 2, 1, 1), *_res(64, 2)),
    ])


class Wav2Lip(nn.Module):
    """The generator; `forward(audio, faces)` takes audio first, like upstream."""

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = _face_encoder()
        self.audio_encoder = _audio_encoder()
        self.face_decoder_blocks = _face_decoder()
        self.output_block = nn.Sequential(ConvBlock(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid())

    def forward(self, audio_sequences: torch.Tensor, face_sequences: torch.Tensor) -> torch.Tensor:
        steps = face_sequences.size(2) if face_sequences.dim() == 5 else 0
        if steps:  # training layout (B,T,1,80,16) / (B,6,T,96,96): fold time into the batch, time-major
            audio_sequences = torch.cat([audio_sequences[:, i] for i in range(steps)], dim=0)
            face_sequences = torch.cat([face_sequences[:, :, i] for i in range(steps)], dim=0)
        x = self.audio_encoder(audio_sequences)
        feats = []
        f = face_sequences
        for block in self.face_encoder_blocks:
            f = block(f)
            feats.append(f)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), feats.pop()), dim=1)  # decoder output first, then the skip
        out: torch.Tensor = self.output_block(x)
        if steps:
            out = torch.stack(torch.split(out, out.size(0) // steps, dim=0), dim=2)
        return out
