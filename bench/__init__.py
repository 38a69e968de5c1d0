"""Benchmarks for issue #6: ``python -m bench`` builds its data, measures, and writes results.json."""
