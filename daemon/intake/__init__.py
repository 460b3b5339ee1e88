"""The intake role: watches inbox/, decides when a drop is complete, accepts or rejects it."""
