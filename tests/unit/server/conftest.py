"""Broker unit tests run against an in-memory storage fake (fake_storage.py)."""

import fake_storage

fake_storage.install_if_missing()
