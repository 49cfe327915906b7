"""Benchmarks of the mirror beside direct pulls and distribution's pull-through proxy."""
