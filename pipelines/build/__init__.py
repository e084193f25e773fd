"""The build: replay the event log into derived tables (see runner.py)."""
