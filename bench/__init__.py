"""Benchmarks with side-by-side baselines, measured in the same run and reported as ratios."""
