"""Experiments: comparing and sweeping NEFTune settings, and reporting what they found.

Submodules are imported on demand (``neftune.experiments.stats`` needs scipy; ``plots``, which
draws every figure, and ``report`` need matplotlib), so importing this package stays cheap.

The layer above the application: may import the library and ``neftune.finetune``; never
``neftune.cli``. ``run`` decides which arms run, ``arm`` runs one, ``executors`` place them.
"""
