"""Putting the noise into a model: part of the library (the package top).

:mod:`.hooks` (``activate`` / ``deactivate``: a forward pre-hook on the model records each batch's
mask, positions or ``cu_seqlens`` in a :mod:`.batch_context`; a forward hook on the input embedding
adds the noise), :mod:`.embedding` (``NEFTuneEmbedding``, the same without hooks),
:mod:`.discovery` (finding the input embedding behind wrappers), :mod:`.checkpointing`
(activation checkpointing's recomputes repeat the noise) and :mod:`.guards` (refusals).
The noise itself is :func:`neftune.noise.noised`.

May import: torch, and the rest of the library (``neftune.noise``, ``config``, ``schedules``,
``streams``, ``kernels``); never ``neftune.finetune``, ``experiments`` or ``cli``.
"""
