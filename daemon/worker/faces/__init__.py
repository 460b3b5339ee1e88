"""Where the presenter's face is, per source frame: scikit-image's bundled LBP cascade, or the engine's S3FD.

Detection runs on a small copy of every Nth frame, in contiguous segments decoded by their own ffmpeg
children and analysed by a thread pool (the cascade releases the GIL) while the video renders: the
renderer waits only for the short first segment. Boxes are median-smoothed and interpolated between
samples, and cached per source-file content hash (and detector) under <internal>/facecache/.

The rooms: `finder` (the top: detector choice, sample size, cache key, start) → `analysis` (the pool,
its segments' decoders, rows final as they arrive) → `segments` (the pure arithmetic); `lbp` and
`sampling` (what each detector is shown), `cache` (the entries), `track` (what the renderer reads:
`Boxes`, the engine's refinement on top) and `fixed` (the ticket's face_box instead of all of it).
"""

from daemon.worker.faces.analysis import FacePass
from daemon.worker.faces.cache import content_hash
from daemon.worker.faces.finder import FaceFinder
from daemon.worker.faces.fixed import FixedBoxes
from daemon.worker.faces.sampling import RgbDetector
from daemon.worker.faces.track import Boxes

__all__ = ["Boxes", "FaceFinder", "FacePass", "FixedBoxes", "RgbDetector", "content_hash"]
