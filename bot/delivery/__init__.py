"""Delivery of each message: the inbox (record, claim, lease, order) and takeover of orphans."""
