"""Benchmarks (not tests): `python -m benchmarks.overhead`, `python -m benchmarks.throughput`. See BENCHMARKS.md."""
