"""neftune: NEFTune (noisy embedding instruction fine-tuning) with per-sequence noise.

import neftune
handle = neftune.activate(model, alpha=5.0)   # train as usual
neftune.deactivate(handle)
"""

from .compat import activate_neftune, deactivate_neftune, neftune_post_forward_hook
from .discovery import EmbeddingNotFoundError, find_input_embedding, unwrap_model
from .hooks import (
    NEFTuneConfig,
    NEFTuneEmbedding,
    NEFTuneHandle,
    activate,
    deactivate,
    get_handle,
    is_active,
    noisy_embeddings,
)
from .noise import DISTRIBUTIONS, SCALINGS, add_noise, expected_noise_norm, segment_lengths, token_scales
from .schedules import resolve_schedule

__version__ = "0.1.0"

__all__ = [
    "DISTRIBUTIONS",
    "SCALINGS",
    "EmbeddingNotFoundError",
    "NEFTuneConfig",
    "NEFTuneEmbedding",
    "NEFTuneHandle",
    "__version__",
    "activate",
    "activate_neftune",
    "add_noise",
    "deactivate",
    "deactivate_neftune",
    "expected_noise_norm",
    "find_input_embedding",
    "get_handle",
    "is_active",
    "neftune_post_forward_hook",
    "noisy_embeddings",
    "resolve_schedule",
    "segment_lengths",
    "token_scales",
    "unwrap_model",
]
