"""Fixtures for the browser tests (see browser_support.py)."""

from browser_support import browser, web_server  # noqa: F401  (pytest fixtures)
