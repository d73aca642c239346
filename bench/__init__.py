"""Benchmarks: the saga engine beside a raw JetStream baseline, measured in the same run.

Run ``python bench/sagas.py --help``; the figures and how to read them are in
``docs/performance.md``.
"""
