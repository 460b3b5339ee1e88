"""The worker role: claims staged jobs, renders them, publishes results (one worker per GPU)."""
