"""The fine-tuning application behind ``neftune train`` / ``eval``: the layer above the library.

:mod:`.training` (runs with TRL's SFTTrainer and the noise callback, run folders, resumes),
:mod:`.evaluation` (metrics with the noise off), :mod:`.data` (built-in tasks, user data, chat
turns), :mod:`.instructions` (IFEval's checkers), :mod:`.models`, :mod:`.hub`, :mod:`.metrics`,
:mod:`.configfile`, :mod:`.outdirs`, :mod:`.io`, :mod:`.progress`, :mod:`.provenance`.

May import: the library (``neftune``'s top modules, ``activation``, ``kernels``,
``integrations``) and its own modules; never ``neftune.experiments`` or ``neftune.cli``.
"""
