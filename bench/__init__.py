"""Benchmarks for `make bench`: each module has run() and prints figures and ratios."""
