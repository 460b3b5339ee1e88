"""Media I/O: ffmpeg/ffprobe children run with our own code (drained stderr, timeouts, allowlists)."""
