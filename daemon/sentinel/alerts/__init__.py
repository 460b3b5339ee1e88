"""The alert chain: an Alert (alert.py) worded in the operator's language (wording.py) goes to the outbox
(outbox.py: local journal, files kept until sent), which hands it to one courier per robot (courier.py:
token bucket, back-off, digests, channel health); channels.py builds that chain from `[alerts]`, and
robots/ holds one module per chat-robot vendor.
"""
