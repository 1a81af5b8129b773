"""Benchmark suites run by ``benches/run.py``: one module per family (rust, python)."""
