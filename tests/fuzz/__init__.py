"""Fuzzing of every parser that takes bytes from outside (see tests/fuzz/README.md)."""
