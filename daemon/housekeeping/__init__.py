"""Status page, status.json and clean-up of the share, run by the intake role once per share."""
