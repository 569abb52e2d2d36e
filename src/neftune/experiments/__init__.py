"""Experiments: comparing and sweeping NEFTune settings, and reporting what they found.

Submodules are imported on demand (``neftune.experiments.stats`` is pure Python,
``plots`` and ``report`` need matplotlib), so importing this package stays cheap.
"""
