"""Benchmarks: run each as a module from the repository root, ``python -m bench.gateway``.

:mod:`bench.harness` holds what the scripts share (processes, /proc accounting, load
helpers, LiteLLM's venv); each script measures one thing and prints its own figures.
"""
