"""Benchmarks: not tests. Each `bench_*.py` module measures one thing on this machine and returns figures.

Run them all with `python -m benchmarks` (or `make bench`); see `benchmarks/__main__.py` for the module
contract and `docs/performance.md` for the latest figures.
"""
