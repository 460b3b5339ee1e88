"""The watchdog role (named sentinel so it never reads like the `watchdog` library)."""
