"""Benchmarks (`aeqprop bench`): speed measured side by side in one run, never in timed tests."""
