"""Notifications: a webhook told when a feed needs a person (worker/notify/notifier.py)."""
