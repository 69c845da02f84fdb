"""Throughput and memory benchmarks per stage and end to end (`make bench`)."""
