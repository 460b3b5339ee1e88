"""The `wav2lip` engine: the official generator resident on one device, fed chunk by chunk.

Construction loads the checkpoint once (a missing or wrong file is a ConfigError naming the file and
the reason: the worker stops with exit 78 instead of crash-looping). `render` never modifies
`chunk.frames`: the pipeline diffs its input against the result to write only changed pixels back
into the yuv420p buffer, and takes the very same tensor back to mean "nothing changed" (no face).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import torch

import daemon.worker.engines.wav2lip.checkpoint as checkpoint
import daemon.worker.engines.wav2lip.composite as composite
import daemon.worker.engines.wav2lip.detection as detection
import daemon.worker.engines.wav2lip.mel as mel
import daemon.worker.engines.wav2lip.memory as memory
import daemon.worker.engines.wav2lip.track as track
from daemon.core.config import Wav2LipEngineConfig
from daemon.core.errors import ConfigError
from daemon.worker.engines.base import Chunk
from daemon.worker.engines.wav2lip.generator import Wav2Lip

log = logging.getLogger(__name__)

_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


class MelFeatures:
    """Per-job audio: the normalised mel on the engine's device and each frame's first window column.

    The mel is filled block by block by a thread of its own while the job renders (mel.mel_blocks): made
    whole first, it held the first frame back 0.1-0.2 s in a 60 s job and 1.45 s in a 10-minute one on
    the GPU box (bench/RESULTS.md, issue 15); `windows` waits only for the columns it reads.
    """

    def __init__(self, wav16k: np.ndarray, fps: float, n_frames: int, device: torch.device | str) -> None:
        self.columns = mel.columns(wav16k)
        width = max(self.columns, mel.MEL_STEP)  # audio shorter than one window: silence after it
        self.mel = torch.full((mel.N_MELS, width), mel.SILENCE, dtype=torch.float32, device=device)
        self.starts = mel.window_starts(width, fps, max(1, n_frames))
        self._filled = 0  # columns on the device so far
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._fill, args=(wav16k,), name="wav2lip-mel", daemon=True)
        self._thread.start()

    def windows(self, frames: np.ndarray) -> torch.Tensor:
        """(B,1,80,16) mel windows for output frame indices (past the end: the final window)."""
        idx = np.minimum(frames, len(self.starts) - 1)
        self.wait(int(self.starts[idx].max()) + mel.MEL_STEP if idx.size else 0)
        cols = torch.as_tensor(self.starts[idx], device=self.mel.device)
        unfolded = self.mel.unfold(1, mel.MEL_STEP, 1)  # (80, T-15, 16) view, no copy
        return unfolded[:, cols].permute(1, 0, 2).unsqueeze(1).contiguous()

    def wait(self, end: int | None = None) -> None:
        """Until columns 0..end-1 (default: all) are on the device; what the filling met is raised here."""
        need = self.columns if end is None else min(end, self.columns)
        with self._changed:
            while self._filled < need and self._error is None:
                self._changed.wait()
            if self._error is not None:
                raise self._error

    def _fill(self, wav16k: np.ndarray) -> None:
        try:
            for start, block in mel.mel_blocks(wav16k):
                stop = start + block.shape[1]
                self.mel[:, start:stop].copy_(torch.from_numpy(np.ascontiguousarray(block)))
                with self._changed:
                    self._filled = stop
                    self._changed.notify_all()
        except BaseException as exc:  # handed to the rendering thread by wait()
            with self._changed:
                self._error = exc
                self._changed.notify_all()


def generate(model: Wav2Lip, audio: torch.Tensor, faces: torch.Tensor, precision: str,
             channels_last: bool = False) -> torch.Tensor:
    """One forward pass → (B,3,96,96) float32 BGR in (0,1). fp32 turns TF32 off: the reference mode."""
    if channels_last:
        faces = faces.contiguous(memory_format=torch.channels_last)
        audio = audio.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        dtype = _AUTOCAST.get(precision)
        if dtype is None:
            with torch.backends.cudnn.flags(enabled=True, benchmark=torch.backends.cudnn.benchmark,
                                            allow_tf32=False):
                exact: torch.Tensor = model(audio, faces).float()
                return exact
        with torch.autocast(device_type=faces.device.type, dtype=dtype):
            mixed: torch.Tensor = model(audio, faces).float()
            return mixed


def load_model(config: Wav2LipEngineConfig) -> tuple[Wav2Lip, str]:
    """The generator from `engines.wav2lip.checkpoint`, or ConfigError naming the file and the reason."""
    if not config.checkpoint:
        raise ConfigError("engines.wav2lip.checkpoint is not set: the wav2lip engine needs the official "
                          "Wav2Lip or Wav2Lip-GAN checkpoint (wav2lip.pth / wav2lip_gan.pth); set its path "
                          "or choose another worker.engine")
    try:
        return checkpoint.load_generator(config.checkpoint)
    except checkpoint.CheckpointError as exc:
        raise ConfigError(f"engines.wav2lip.checkpoint: {exc}") from None


class Wav2LipEngine:
    name = "wav2lip"
    # None: the presenter's rate is kept, as upstream inference.py does (it reads the video's fps and
    # steps the mel windows by 80/fps; `prepare` gets the plan's rate). Training used 25 fps.
    fps: float | None = None

    def __init__(self, config: Wav2LipEngineConfig, device: torch.device | str = "cuda") -> None:
        self.config = config
        self.device = torch.device(device)
        model, self.description = load_model(config)
        self.cuda = self.device.type == "cuda"
        # half precision on a CPU is emulated and ~10x slower than fp32 there: CPU runs are fp32
        self.precision = config.precision if self.cuda else "fp32"
        self.model = model.to(self.device)
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._batch = config.batch_size
        # benchmarks set this to a dict to get seconds per stage (crop / model / composite); it makes
        # every stage wait for the GPU, so it stays None in production
        self.timings: dict[str, float] | None = None
        self._detector = self._load_detector()
        # for each job's report.json (the pipeline leaves it out when a ticket's face_box replaced detection)
        self.warnings: tuple[str, ...] = () if self._detector else (detection.NO_S3FD,)
        log.info("wav2lip: %s on %s, %s, batch %d", self.description, self.device, self.precision,
                 self._batch)

    def _load_detector(self) -> detection.S3FDDetector | None:
        path = self.config.face_detector_checkpoint
        if not path:
            return None
        try:
            net = checkpoint.load_detector(path)
        except checkpoint.CheckpointError as exc:
            raise ConfigError(f"engines.wav2lip.face_detector_checkpoint: {exc}") from None
        return detection.S3FDDetector(net, self.device)

    def face_finder(self, fallback: detection.FaceDetector | None = None) -> detection.FaceFinder:
        """S3FD when its checkpoint is configured, else `fallback` (the media pipeline's detector)."""
        chosen: detection.FaceDetector | None = self._detector or fallback
        if chosen is None:
            raise ConfigError("engines.wav2lip: no face detector: set face_detector_checkpoint to an S3FD "
                              "checkpoint (s3fd.pth) or pass the media pipeline's detector as the fallback")
        return detection.FaceFinder(chosen, self.config.detect_height, self.config.detect_batch_size)

    def sample_detector(self) -> detection.SampleDetector | None:
        """S3FD for the pipeline's face pass when its checkpoint is configured; None: the pass uses LBP."""
        if self._detector is None:
            return None
        return detection.SampleDetector(self.face_finder())

    def face_boxes(self, raw: np.ndarray, width: int, height: int, geometry: str = "s3fd") -> np.ndarray:
        """A whole video's detector boxes → the crop boxes to put in `Chunk.boxes` (int32, -1 rows kept).

        `geometry` names the detector ("s3fd", or "lbp" for the media pipeline's cascade) whose boxes
        are calibrated toward S3FD's before upstream's pads and smoothing.
        """
        track = self.face_track(width, height, geometry)
        return np.concatenate([track.push(raw), track.finish()])

    def face_track(self, width: int, height: int, geometry: str = "s3fd") -> FaceTrack:
        """`face_boxes` as a stream, for boxes that arrive while the video renders."""
        return FaceTrack(detection.CALIBRATIONS.get(geometry, detection.IDENTITY), self.box_track(width, height))

    def box_track(self, width: int, height: int) -> track.BoxTrack:
        """Pads, gap hold and smoothing as configured, for one source video."""
        pads = (int(p) for p in self.config.pads)
        return track.BoxTrack(width, height, tuple(pads), self.config.smooth_window,  # type: ignore[arg-type]
                              self.config.hold_frames)

    def prepare(self, wav16k: np.ndarray, fps: float, n_frames: int) -> MelFeatures:
        return MelFeatures(wav16k, fps, n_frames, self.device)

    def max_batch(self) -> int:
        return self._batch

    def render(self, chunk: Chunk, features: MelFeatures) -> torch.Tensor:
        frames = chunk.frames
        boxes = _clip(np.asarray(chunk.boxes).reshape(-1, 4), frames.shape[2], frames.shape[1])
        rows = np.flatnonzero((boxes[:, 0] >= 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
        if rows.size == 0:
            return frames

        def predict(a: int, b: int) -> torch.Tensor:
            sel = rows[a:b]
            t = time.perf_counter()
            faces = composite.model_input(composite.crop_faces(frames, boxes, sel))
            audio = features.windows(chunk.start + sel)
            t = self._tick("crop", t)
            pred = generate(self.model, audio, faces, self.precision, self.cuda).flip(1)  # BGR → RGB
            self._tick("model", t)
            return pred

        # predictions first, compositing after: a retried batch must not blend a frame twice
        preds, self._batch = memory.batched(predict, rows.size, self._batch, "wav2lip generator")
        pred = torch.cat(preds)
        t = time.perf_counter()
        out = frames.clone()
        if self.config.composite == "paste":
            composite.paste(out, boxes, rows, pred)
        else:
            composite.feather(out, boxes, rows, pred, self.config.mask_top, self.config.mask_feather)
        self._tick("composite", t)
        return out

    def _tick(self, stage: str, since: float) -> float:
        if self.timings is None:
            return since
        if self.cuda:
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - since
        return now


class FaceTrack:
    """Detector boxes in (any number at a time), crop boxes out once their smoothing window is complete."""

    def __init__(self, calibration: detection.BoxCalibration, boxes: track.BoxTrack) -> None:
        self.calibration = calibration
        self.track = boxes

    def push(self, raw: np.ndarray) -> np.ndarray:
        return self.track.push(detection.calibrate(np.asarray(raw, dtype=np.float64).reshape(-1, 4),
                                                   self.calibration))

    def finish(self) -> np.ndarray:
        return self.track.finish()


def _clip(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    out = boxes.astype(np.int64).copy()
    face = out[:, 0] >= 0
    out[face, 0::2] = np.clip(out[face, 0::2], 0, width)
    out[face, 1::2] = np.clip(out[face, 1::2], 0, height)
    clipped: np.ndarray = out
    return clipped
