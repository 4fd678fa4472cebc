"""Mutation testing helpers that mutmut cannot do by itself (README: Mutation testing)."""
