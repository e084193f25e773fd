"""Fixtures of the adapter tests (helpers live in adapter_testing.py)."""

from adapter_testing import external, fixtures, run  # noqa: F401 (pytest fixtures)
