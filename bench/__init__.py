"""Benchmark scripts and their recorded results (``bench/RESULTS.md``, ``bench/results/``).

Run them with ``egotune bench NAME`` or ``make bench``; each writes a JSON file and appends a row.
"""
