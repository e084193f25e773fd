"""Quality gate: great-expectations suites per event family and their runner."""
