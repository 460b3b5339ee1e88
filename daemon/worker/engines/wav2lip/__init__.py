"""The Wav2Lip engine: official checkpoints, exact audio front-end, S3FD or a calibrated offline detector."""

from daemon.worker.engines.wav2lip.checkpoint import check_checkpoint, check_detector
from daemon.worker.engines.wav2lip.engine import Wav2LipEngine

__all__ = ["Wav2LipEngine", "check_checkpoint", "check_detector"]
