"""Benchmarks for the broker, run by `make bench` (`python -m bench`).

Every speed is a ratio against a baseline measured in the same run, each figure the median of several
short interleaved rounds. Figures live one per module (`fig_*.py`) and are listed in `bench.figures`.
"""
