"""The optional `worker` extra (`pip install 'lipsyncd[worker]'`): which of its modules this install lacks.

Intake and the watchdog run on the base install; only a worker renders, and only it needs torch,
numpy, scikit-image and ffmpeg-python. `lipsyncd worker` and `doctor` name what is missing.
"""

from __future__ import annotations

import importlib.util

# import name → distribution name, as `pip` knows it
WORKER = {"torch": "torch", "numpy": "numpy", "skimage": "scikit-image", "ffmpeg": "ffmpeg-python"}
INSTALL = "pip install 'lipsyncd[worker]' (torch==2.13.0 first, as scripts/bootstrap.sh does)"


def missing_worker_stack() -> list[str]:
    """Distributions of the worker extra that cannot be imported here, in a stable order."""
    out = []
    for module, dist in WORKER.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a blocked or broken module counts as missing
            found = False
        if not found:
            out.append(dist)
    return out
