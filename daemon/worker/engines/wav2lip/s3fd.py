"""The S3FD face detector (reference/wav2lip.md §3.3): network with the official key names, batched decode.

Upstream decodes every location above 0.05 in a Python loop, runs NMS and keeps the first (highest
scoring) box. NMS never removes the top-scoring box, so "argmax over all locations, kept if > 0.5" gives
the same box — computed here on the device for the whole batch at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PARAMETERS = 22_459_110
MEAN_RGB = (104.0, 117.0, 123.0)  # upstream subtracts this from the RGB-reversed frame
SCORE_MIN = 0.5

_VGG = [("conv1", 3, 64, 2), ("conv2", 64, 128, 2), ("conv3", 128, 256, 3), ("conv4", 256, 512, 3),
        ("conv5", 512, 512, 3)]
# (source feature, channels, conf outputs); strides 4..128, anchor = 4 x stride
_HEADS = [("conv3_3_norm", 256, 4), ("conv4_3_norm", 512, 2), ("conv5_3_norm", 512, 2),
          ("fc7", 1024, 2), ("conv6_2", 512, 2), ("conv7_2", 256, 2)]


class L2Norm(nn.Module):
    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10
        return x / norm * self.weight.view(1, -1, 1, 1)


class S3FD(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for stage, cin, cout, n in _VGG:
            for i in range(1, n + 1):
                setattr(self, f"{stage}_{i}", nn.Conv2d(cin if i == 1 else cout, cout, 3, 1, 1))
        self.fc6 = nn.Conv2d(512, 1024, 3, 1, padding=3)
        self.fc7 = nn.Conv2d(1024, 1024, 1, 1, 0)
        self.conv6_1 = nn.Conv2d(1024, 256, 1, 1, 0)
        self.conv6_2 = nn.Conv2d(256, 512, 3, 2, 1)
        self.conv7_1 = nn.Conv2d(512, 128, 1, 1, 0)
        self.conv7_2 = nn.Conv2d(128, 256, 3, 2, 1)
        self.conv3_3_norm = L2Norm(256, 10)
        self.conv4_3_norm = L2Norm(512, 8)
        self.conv5_3_norm = L2Norm(512, 5)
        for name, ch, conf in _HEADS:
            setattr(self, f"{name}_mbox_conf", nn.Conv2d(ch, conf, 3, 1, 1))
            setattr(self, f"{name}_mbox_loc", nn.Conv2d(ch, 4, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[cls1, reg1, ..., cls6, reg6]; cls has 2 channels (background max-out applied)."""
        feats: dict[str, torch.Tensor] = {}
        h = x
        for stage, _cin, _cout, n in _VGG:
            for i in range(1, n + 1):
                h = F.relu(getattr(self, f"{stage}_{i}")(h))
            feats[f"{stage}_{n}"] = h
            h = F.max_pool2d(h, 2, 2)
        h = F.relu(self.fc7(F.relu(self.fc6(h))))
        feats["fc7"] = h
        h = F.relu(self.conv6_2(F.relu(self.conv6_1(h))))
        feats["conv6_2"] = h
        feats["conv7_2"] = F.relu(self.conv7_2(F.relu(self.conv7_1(h))))
        for name in ("conv3_3", "conv4_3", "conv5_3"):
            feats[f"{name}_norm"] = getattr(self, f"{name}_norm")(feats[name])
        out: list[torch.Tensor] = []
        for name, _ch, _conf in _HEADS:
            cls = getattr(self, f"{name}_mbox_conf")(feats[name])
            if cls.size(1) == 4:  # max-out background on the smallest scale
                c = torch.chunk(cls, 4, 1)
                cls = torch.cat([torch.max(torch.max(c[0], c[1]), c[2]), c[3]], dim=1)
            out += [cls, getattr(self, f"{name}_mbox_loc")(feats[name])]
        return out


def best_boxes(outputs: list[torch.Tensor]) -> torch.Tensor:
    """(B,5) x1,y1,x2,y2,score of the top-scoring face per image in network-input pixels; score 0: none."""
    scores, boxes = [], []
    for level in range(len(outputs) // 2):
        cls, reg = outputs[2 * level].float(), outputs[2 * level + 1].float()
        stride = 2 ** (level + 2)
        prob = F.softmax(cls, dim=1)[:, 1]  # (B,H,W)
        b, h, w = prob.shape
        ys = torch.arange(h, device=prob.device, dtype=torch.float32) * stride + stride / 2
        xs = torch.arange(w, device=prob.device, dtype=torch.float32) * stride + stride / 2
        anchor = stride * 4.0
        cx = xs.view(1, 1, w) + reg[:, 0] * 0.1 * anchor
        cy = ys.view(1, h, 1) + reg[:, 1] * 0.1 * anchor
        bw = anchor * torch.exp(reg[:, 2] * 0.2)
        bh = anchor * torch.exp(reg[:, 3] * 0.2)
        x1, y1 = cx - bw / 2, cy - bh / 2
        level_boxes = torch.stack([x1, y1, x1 + bw, y1 + bh], dim=-1)  # (B,H,W,4)
        scores.append(prob.reshape(b, -1))
        boxes.append(level_boxes.reshape(b, -1, 4))
    all_scores, all_boxes = torch.cat(scores, 1), torch.cat(boxes, 1)
    best, idx = all_scores.max(dim=1)
    chosen = all_boxes[torch.arange(all_boxes.size(0), device=idx.device), idx]
    keep = (best > SCORE_MIN).float().unsqueeze(1)
    return torch.cat([chosen.clamp(min=0) * keep, (best * keep.squeeze(1)).unsqueeze(1)], dim=1)


def preprocess(frames_rgb: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (N,H,W,3) → float NCHW minus the upstream mean (applied to RGB, as upstream does)."""
    mean = torch.tensor(MEAN_RGB, device=frames_rgb.device, dtype=torch.float32)
    return (frames_rgb.float() - mean).permute(0, 3, 1, 2).contiguous()
