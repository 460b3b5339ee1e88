"""The appliance core: stdlib only. States and the one move(), tickets, config, errors, heartbeats."""
