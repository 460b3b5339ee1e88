"""From raw detector boxes to the crop boxes Wav2Lip uses: hold short gaps, pad, smooth (reference §3.3).

Order as upstream: pads on each detected box (clipped to the frame), then the forward-looking T-frame
mean (box i = mean of boxes i..i+T-1, the last frames all use the final T boxes), truncated to int.
`BoxTrack` does this streaming, emitting each frame once its look-ahead has arrived, so boxes never
need the whole video in memory; `smooth_all` is the same over a whole array.
"""

from __future__ import annotations

from collections import deque

import numpy as np

NO_FACE = -1


class BoxTrack:
    def __init__(self, width: int, height: int, pads: tuple[int, int, int, int] = (0, 10, 0, 0),
                 window: int = 5, hold: int = 12) -> None:
        self.width, self.height = width, height
        self.pads = pads  # top, bottom, left, right, as upstream's --pads
        self.window = max(1, window)
        self.hold = hold
        # the last T-1 emitted boxes (already smoothed) followed by every padded box not yet emitted;
        # upstream smooths in place, so its final windows see earlier frames' smoothed values
        self._buf: deque[np.ndarray] = deque()
        self._pending = 0
        self._seen = 0
        self._held: np.ndarray | None = None
        self._missed = 0

    def push(self, raw: np.ndarray) -> np.ndarray:
        """Feed (n,4) x1,y1,x2,y2 detector boxes (-1 rows: none); returns the (m,4) int32 boxes now final."""
        out = []
        for box in np.asarray(raw, dtype=np.float64).reshape(-1, 4):
            self._buf.append(self._pad(self._fill(box)))
            self._pending += 1
            self._seen += 1
            if self._pending == self.window:  # the oldest pending frame now has its whole look-ahead
                out.append(self._emit(list(self._buf)[-self.window:]))
        return _stack(out)

    def finish(self) -> np.ndarray:
        """The remaining frames, each with upstream's final window `boxes[len(boxes) - T:]`."""
        out = []
        while self._pending:
            items = list(self._buf)
            # upstream slices boxes[len - T:]; for videos shorter than T that start is negative and python
            # keeps only the last T-len boxes: reproduced, not corrected
            start = self._seen - self.window if self._seen < self.window else len(items) - self.window
            out.append(self._emit(items[start:]))
        return _stack(out)

    def _emit(self, window: list[np.ndarray]) -> np.ndarray:
        i = len(self._buf) - self._pending  # position of the oldest pending frame
        smoothed = _mean(window, self._buf[i])
        self._buf[i] = smoothed.astype(np.float64)  # written back, as upstream's in-place loop does
        self._pending -= 1
        while len(self._buf) - self._pending > self.window - 1:
            self._buf.popleft()
        return smoothed

    def _fill(self, box: np.ndarray) -> np.ndarray:
        """Hold the last seen box through gaps of up to `hold` frames; longer gaps stay faceless."""
        if box[0] >= 0:
            self._held, self._missed = box, 0
            return box
        self._missed += 1
        if self._held is not None and self._missed <= self.hold:
            return self._held
        return np.full(4, NO_FACE, dtype=np.float64)

    def _pad(self, box: np.ndarray) -> np.ndarray:
        if box[0] < 0:
            return box
        x1, y1, x2, y2 = (int(v) for v in box)  # upstream turns detections into ints before padding
        top, bottom, left, right = self.pads
        return np.array([max(0, x1 - left), max(0, y1 - top),
                         min(self.width, x2 + right), min(self.height, y2 + bottom)], dtype=np.float64)


def _mean(window: list[np.ndarray], own: np.ndarray) -> np.ndarray:
    if own[0] < 0:
        return np.full(4, NO_FACE, dtype=np.int32)
    valid = [b for b in window if b[0] >= 0]
    # upstream writes the mean into an int array: truncation
    mean: np.ndarray = np.mean(valid, axis=0).astype(np.int32)
    return mean


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    return np.stack(rows).astype(np.int32) if rows else np.zeros((0, 4), dtype=np.int32)


def smooth_all(raw: np.ndarray, width: int, height: int, pads: tuple[int, int, int, int] = (0, 10, 0, 0),
               window: int = 5, hold: int = 12) -> np.ndarray:
    """The whole track at once (upstream's `face_detect` + `get_smoothened_boxes`)."""
    track = BoxTrack(width, height, pads, window, hold)
    return np.concatenate([track.push(raw), track.finish()])
