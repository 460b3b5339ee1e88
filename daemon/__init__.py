"""lipsyncd: a hot-folder appliance for audio-driven lip-sync video."""

__version__ = "0.1.0"
