"""Trainer integrations: :class:`NEFTuneCallback`, :func:`attach`, :func:`patch_transformers`.

Importing this package needs ``transformers`` (``pip install "neftune[transformers]"``).
"""

from .patch import patch_transformers, unpatch_transformers
from .transformers import NEFTuneCallback, add_neftune, attach

__all__ = ["NEFTuneCallback", "add_neftune", "attach", "patch_transformers", "unpatch_transformers"]
