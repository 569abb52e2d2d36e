"""Which implementation adds the noise: ``"torch"`` (the reference, runs anywhere) or ``"triton"``.

``backend="auto"`` (the default everywhere) picks the torch reference, on CUDA too: on an H200
the first fused Triton kernel passed every CUDA test but was slower than transformers' hook and
no faster in a training step (docs/performance.md, "GPU figures"); the rebuilt kernel (issue 27)
has not run on a GPU yet. So the evidence does not make it the default
(:data:`FUSED_KERNEL_GPU_VERIFIED`). Were it switched on, ``"auto"`` would pick the
kernel when it can run at full speed (a CUDA tensor of a supported dtype, Triton importable,
not in interpreter mode). ``backend="triton"`` forces the kernel and raises
:class:`BackendUnavailableError` where it cannot run, saying why. Under ``TRITON_INTERPRET=1``
a forced ``"triton"`` also runs on CPU tensors (Triton's interpreter: slow, for tests);
``"auto"`` never picks the interpreter.

``scaling="batch"`` reproduces transformers' random draws bit for bit, which only torch's
RNG can do, so it always runs on the torch path.

Nothing here imports triton unless a tensor is on CUDA or the kernel was asked for.
"""

from __future__ import annotations

import torch
from torch import nn

from ._probe import SUPPORTED_DTYPES, interpret_mode, triton_importable

BACKENDS = ("auto", "torch", "triton")

_DTYPE_NAMES = ", ".join(str(d).removeprefix("torch.") for d in SUPPORTED_DTYPES)
_SEED_HIGH = 2**63 - 1

#: Whether ``backend="auto"`` may pick the fused kernel for CUDA tensors. The first kernel passed
#: ``pytest -m gpu`` on an H200 (15/15), but measured 0.66-0.92x the speed of transformers' hook
#: and within noise of the torch path in a training step (benchmarks/results/h200-*.json). The
#: rebuilt kernel (issue 27) has no GPU figure yet (benchmarks/gpu_suite.py --tag v2), so ``auto``
#: keeps the torch path. Switch it on only when the op and step targets are met on a GPU;
#: ``backend="triton"`` works either way.
FUSED_KERNEL_GPU_VERIFIED = False


class BackendUnavailableError(RuntimeError):
    """``backend="triton"`` was asked for where the fused kernel cannot run; the message says why."""


def check_backend(backend: object, *, scaling: str = "per_sequence") -> str:
    """Validate a ``backend`` argument (and its combination with ``scaling``); return it.

    Also refuses ``backend="triton"`` when triton is not installed, so that the mistake
    shows at configuration time rather than at the first training step.
    """
    if not isinstance(backend, str):
        raise TypeError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(map(repr, BACKENDS))}")
    if backend == "triton":
        if scaling == "batch":
            raise ValueError(
                "backend='triton' cannot be combined with scaling='batch': that mode reproduces "
                "transformers' random draws exactly, which needs torch's RNG; use backend='auto' or 'torch'"
            )
        if not triton_importable():
            raise BackendUnavailableError(
                "backend='triton' needs the triton package, which is not installed "
                "(pip install 'neftune[triton]' on Linux with a CUDA GPU); use backend='auto' or 'torch'"
            )
    return backend


def triton_unavailable_reason(tensor: torch.Tensor) -> str | None:
    """Why the fused kernel cannot run on ``tensor`` (None when it can)."""
    if tensor.dtype not in SUPPORTED_DTYPES:
        return f"the embeddings are {str(tensor.dtype).removeprefix('torch.')}; the kernel supports {_DTYPE_NAMES}"
    if not triton_importable():
        return "the triton package is not installed (pip install 'neftune[triton]')"
    if tensor.is_cuda or interpret_mode():
        return None
    if not torch.cuda.is_available():
        return (
            f"the embeddings are on {tensor.device} and no CUDA device is available; Triton kernels "
            "need a CUDA GPU (TRITON_INTERPRET=1 runs them in Triton's slow CPU interpreter, for tests)"
        )
    return f"the embeddings are on {tensor.device}, not on a CUDA device; move the model to CUDA"


def _rows_view_exists(tensor: torch.Tensor) -> bool:
    """Whether the kernel can work on ``tensor`` without a copy: unit stride on the hidden dim."""
    if tensor.dim() == 0:
        return False
    if tensor.shape[-1] > 1 and tensor.stride(-1) != 1:
        return False
    try:
        tensor.view(-1, tensor.shape[-1])
    except RuntimeError:
        return False
    return True


def resolve_backend(backend: str, tensor: torch.Tensor, *, scaling: str = "per_sequence") -> str:
    """The backend that will run for ``tensor``: ``"torch"`` or ``"triton"``.

    ``"auto"``: ``"torch"`` while :data:`FUSED_KERNEL_GPU_VERIFIED` is False (today); after
    that, ``"triton"`` for a CUDA tensor of a supported dtype and layout when triton is
    importable and the interpreter is off, ``"torch"`` otherwise. Always ``"torch"`` for
    ``scaling="batch"``. ``"triton"``: raises :class:`BackendUnavailableError` (naming the
    reason) where the kernel cannot run. ``backend`` must already be valid (:func:`check_backend`).
    """
    if backend == "torch":
        return "torch"
    if scaling == "batch":
        if backend == "triton":
            check_backend(backend, scaling=scaling)  # raises the explanatory ValueError
        return "torch"
    if backend == "auto":
        fast = (
            FUSED_KERNEL_GPU_VERIFIED
            and tensor.is_cuda
            and tensor.dtype in SUPPORTED_DTYPES
            and _rows_view_exists(tensor)
            and triton_importable()
            and not interpret_mode()
        )
        return "triton" if fast else "torch"
    reason = triton_unavailable_reason(tensor)
    if reason is not None:
        raise BackendUnavailableError(
            f"backend='triton' cannot run here: {reason}. Use backend='auto' (falls back to torch) "
            "or backend='torch'"
        )
    return "triton"


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A kernel seed in ``[0, 2**63 - 1)`` drawn from ``generator`` (advancing it).

    ``None`` draws from torch's default CPU generator, so ``torch.manual_seed`` makes the
    fused noise reproducible. A CPU generator costs nothing on the GPU; a CUDA generator
    costs one device-to-host copy (a synchronisation) per call.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, _SEED_HIGH, (), generator=generator, device=device).item())


def output_writable_in_place(output: torch.Tensor) -> bool:
    """Whether ``output`` (an embedding lookup's result) may be overwritten without harming autograd.

    True when it is not a view and either takes no part in autograd (no grad) or was made
    directly by ``F.embedding``, whose backward needs only the indices, never the output.
    False for a leaf that requires grad (e.g. after transformers' ``enable_input_require_grads``
    hook on a frozen embedding): autograd refuses in-place writes to those.
    """
    if output._base is not None:
        return False
    if not output.requires_grad:
        return True
    return output.grad_fn is not None and type(output.grad_fn).__name__ == "EmbeddingBackward0"


def is_plain_embedding_forward(module: nn.Module) -> bool:
    """Whether ``module``'s forward is ``nn.Embedding.forward`` itself (no subclass rescaling etc.)."""
    return isinstance(module, nn.Embedding) and type(module).forward is nn.Embedding.forward


def may_write_in_place(module: nn.Module, output: torch.Tensor, hook_id: int | None) -> bool:
    """Whether the forward hook ``hook_id`` may overwrite ``output`` (the embedding's result) unseen.

    Needs: a plain ``nn.Embedding`` forward (its backward keeps only the indices), an output
    autograd allows to be written (:func:`output_writable_in_place`), and no other hook that
    ran before ours and may have kept a reference to the clean output — except
    transformers' ``enable_input_require_grads`` hook, which only flips ``requires_grad``.
    """
    if not is_plain_embedding_forward(module) or not output_writable_in_place(output):
        return False
    if getattr(torch.nn.modules.module, "_global_forward_hooks", None):
        return False
    for key, fn in module._forward_hooks.items():
        if key == hook_id:
            return True
        if getattr(fn, "__name__", None) != "make_inputs_require_grads":
            return False
    return False
