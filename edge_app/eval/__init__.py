"""Measurement helpers for benchmarks and tests (never used on the live path)."""
