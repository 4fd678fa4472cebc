"""Benchmarks: scripts that print figures, run against loopback fakes (never timed tests)."""
