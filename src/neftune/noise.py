"""Pure NEFTune math: argument checks, per-sequence lengths, scales and noise sampling.

Nothing here registers hooks or reads global state (except torch's default RNG when
no generator is given). Shapes: ``embeds`` is ``(B, T, d)`` (or ``(T, d)``, treated as
one row); masks and position ids are ``(B, T)``; ``cu_seqlens`` is ``(N + 1,)``
cumulative lengths over the flattened ``B * T`` tokens.

For one sequence of ``L`` real tokens and width ``d`` the noise is
``alpha / sqrt(L * d) * eps`` with ``eps`` i.i.d. per element, so its squared L2 norm
has expectation ``alpha**2 * Var(eps)``: ``alpha**2 / 3`` for "uniform",
``alpha**2`` for "gaussian" and exactly ``alpha**2`` for "symmetric".
"""

from __future__ import annotations

import math
from numbers import Real

import torch

from .kernels import fused_add_noise
from .kernels.backend import check_backend, draw_seed, resolve_backend
from .kernels.reference import sample_eps, torch_add_noise
from .kernels.scales import kernel_scales, scale_value

DISTRIBUTIONS = ("uniform", "gaussian", "symmetric")
SCALINGS = ("per_sequence", "batch")

#: Var(eps) of one noise element before scaling, per distribution.
EPS_VARIANCE = {"uniform": 1.0 / 3.0, "gaussian": 1.0, "symmetric": 1.0}


def check_alpha(alpha: object, name: str = "alpha") -> float:
    """Return ``alpha`` as a float, or raise if it is not a finite number >= 0."""
    if isinstance(alpha, bool) or not isinstance(alpha, Real | torch.Tensor):
        raise TypeError(f"{name} must be a real number >= 0, got {type(alpha).__name__} {alpha!r}")
    if isinstance(alpha, torch.Tensor):
        if alpha.numel() != 1 or alpha.is_complex():
            raise TypeError(f"{name} must be a real scalar, got a tensor of shape {tuple(alpha.shape)}")
        alpha = alpha.item()
    value = float(alpha)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < 0:
        hint = " (the paper used 5, 10 or 15)" if name == "alpha" else ""
        raise ValueError(f"{name} must be >= 0, got {value}{hint}")
    return value


def check_choice(value: object, choices: tuple[str, ...], name: str) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming the argument."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
    return value


def expected_noise_norm(alpha: float, distribution: str = "uniform") -> float:
    """sqrt(E||noise||^2) of one sequence: alpha/sqrt(3) for uniform, alpha otherwise."""
    check_choice(distribution, DISTRIBUTIONS, "distribution")
    return check_alpha(alpha) * math.sqrt(EPS_VARIANCE[distribution])


def _as_rows(embeds: torch.Tensor) -> tuple[int, int, int]:
    if embeds.dim() == 3:
        return embeds.shape[0], embeds.shape[1], embeds.shape[2]
    if embeds.dim() == 2:
        return 1, embeds.shape[0], embeds.shape[1]
    raise ValueError(f"embeds must have shape (batch, seq, dim) or (seq, dim); got {tuple(embeds.shape)}")


def _check_2d(t: torch.Tensor, name: str, rows: int, cols: int) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() == 1 and rows == 1:
        t = t.unsqueeze(0)
    if tuple(t.shape) != (rows, cols):
        raise ValueError(
            f"{name} has shape {tuple(t.shape)} but the embeddings need ({rows}, {cols}) "
            "(batch, sequence length)"
        )
    return t


def block_mask_boundaries(mask: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(valid, starts)``, each ``(B, T)`` bool, read from a block attention mask.

    ``mask``: ``(B, H, T, T)`` or ``(B, T, T)`` (query x key; the first head is read), bool
    (True = may attend), float additive (0 = may attend, large negative = blocked) or float 0/1
    (1 = may attend), told apart without a host sync. A token that may not attend to itself is
    padding (packers mask a pad token's whole row); a token that may not attend to the token
    before it starts a new sequence (block-diagonal packing, causal or not).
    """
    if mask.dim() == 4:
        mask = mask[:, 0]
    if tuple(mask.shape) != (rows, cols, cols):
        raise ValueError(
            f"a block attention_mask must have shape (batch, heads, seq, seq) or (batch, seq, seq) with "
            f"batch {rows} and seq {cols}; got {tuple(mask.shape)}"
        )
    if mask.dtype == torch.bool:
        allowed = mask
    elif mask.is_floating_point():
        additive = (mask < 0).any()  # 0-d tensor: no sync
        allowed = torch.where(additive, mask > -1.0, mask > 0)
    else:
        allowed = mask != 0
    valid = allowed.diagonal(dim1=1, dim2=2).clone()
    starts = torch.ones(rows, cols, dtype=torch.bool, device=mask.device)
    if cols > 1:
        starts[:, 1:] = ~allowed.diagonal(offset=-1, dim1=1, dim2=2)
    return valid, starts


def segment_lengths(
    shape: tuple[int, int],
    *,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    pad_mask: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    ignore: torch.Tensor | None = None,
) -> torch.Tensor:
    """Length ``L`` of the sequence each token belongs to, shape ``(B, T)`` int64; 0 on padding.

    Boundaries, whichever the batch has: ``cu_seqlens`` (flattened ``B*T`` tokens; tokens past
    its last entry are padding); otherwise a sequence starts at a row's first token, where
    ``position_ids`` restart at 0 (or do not continue the previous one), and where the
    ``attention_mask`` says so. ``attention_mask``: ``(B, T)`` 0/1 (0 = padding); ``(B, T)``
    segment ids (any value above 1 in the batch: 1..k number the packed sequences of a row,
    0 = padding, a new sequence where the id changes); or a block mask ``(B, H, T, T)`` /
    ``(B, T, T)`` (see :func:`block_mask_boundaries`). Padding does not count towards ``L``.
    ``pad_mask``: ``(B, T)`` bool, True on pad-token ids; a sequence made only of such tokens is
    padding (a packer's padded tail given positions of its own). ``ignore`` (``(B, T)`` bool,
    True = a token to leave out, e.g. a VLM's image placeholders) is applied last, like padding
    that does not split a sequence. No host sync on accelerators.
    """
    rows, cols = shape
    if device is None:
        for t in (attention_mask, position_ids, cu_seqlens):
            if isinstance(t, torch.Tensor):
                device = t.device
                break
    valid = torch.ones(rows, cols, dtype=torch.bool, device=device)
    mask_starts = None
    if attention_mask is not None:
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() in (3, 4):
            valid, mask_starts = block_mask_boundaries(attention_mask.to(device), rows, cols)
        else:
            ids = _check_2d(attention_mask, "attention_mask", rows, cols).to(device)
            valid = ids != 0
            if cols > 1:
                segmented = (ids > 1).any()  # 0-d tensor: segment ids or a 0/1 mask, without a sync
                mask_starts = torch.zeros(rows, cols, dtype=torch.bool, device=device)
                mask_starts[:, 1:] = segmented & (ids[:, 1:] != ids[:, :-1])

    if cu_seqlens is not None:
        if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 1:
            raise ValueError("cu_seqlens must be a 1-D tensor of cumulative lengths starting at 0")
        cu = cu_seqlens.to(device=device, dtype=torch.long)
        # Validation reads values back; skip it on accelerators to avoid a sync every step.
        if cu.device.type == "cpu" and (
            cu[0].item() != 0 or bool((cu.diff() < 0).any()) or cu[-1].item() > rows * cols
        ):
            raise ValueError(
                f"cu_seqlens must start at 0, never decrease and end at most at {rows * cols} "
                f"(batch x sequence tokens); got {cu.tolist()[:8]}{'...' if cu.numel() > 8 else ''}"
            )
        flat = torch.arange(rows * cols, device=device)
        seg = torch.searchsorted(cu[1:], flat, right=True)  # index of the segment holding each token
        inside = flat < cu[-1]
        seg = seg.clamp(max=max(cu.numel() - 2, 0)).view(rows, cols)
        valid = valid & inside.view(rows, cols)
        row_offset = torch.zeros(rows, 1, dtype=torch.long, device=device)
    else:
        starts = torch.zeros(rows, cols, dtype=torch.bool, device=device)
        starts[:, 0] = True
        if position_ids is not None:
            position_ids = _check_2d(position_ids, "position_ids", rows, cols).to(device)
            if cols > 1:
                starts[:, 1:] = (position_ids[:, 1:] == 0) | (position_ids[:, 1:] != position_ids[:, :-1] + 1)
        if mask_starts is not None:
            starts = starts | mask_starts
        seg = starts.long().cumsum(1) - 1  # segment index within the row
        row_offset = torch.arange(rows, device=device).unsqueeze(1) * cols
    if ignore is not None:
        valid = valid & ~_check_2d(ignore, "ignore", rows, cols).to(device=device, dtype=torch.bool)
    # Count real tokens per (row, segment) with one scatter over globally unique ids.
    gid = (seg + row_offset).view(-1)
    # cu_seqlens may list more (empty) segments than there are tokens: size for both.
    n_ids = rows * cols if cu_seqlens is None else max(rows * cols, cu_seqlens.numel())
    counts = torch.zeros(n_ids, dtype=torch.long, device=device)
    counts.scatter_add_(0, gid, valid.view(-1).long())
    if pad_mask is not None:
        pads = _check_2d(pad_mask, "pad_mask", rows, cols).to(device).bool() & valid
        pad_counts = torch.zeros_like(counts).scatter_add_(0, gid, pads.view(-1).long())
        counts = torch.where(pad_counts == counts, torch.zeros_like(counts), counts)
        valid = valid & (counts.gather(0, gid).view(rows, cols) > 0)
    lengths = counts.gather(0, gid).view(rows, cols)
    return lengths * valid


def pad_token_mask(
    input_ids: torch.Tensor | None, pad_token_id: int | None, embeds: torch.Tensor
) -> torch.Tensor | None:
    """``input_ids == pad_token_id`` when both are given and the ids match ``embeds``' tokens, else None."""
    if pad_token_id is None or not isinstance(input_ids, torch.Tensor):
        return None
    if tuple(input_ids.shape) != tuple(embeds.shape[:-1]):
        return None
    return input_ids == pad_token_id


def token_scales(
    embeds: torch.Tensor,
    alpha: float,
    *,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    pad_mask: torch.Tensor | None = None,
    ignore: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token noise scale ``alpha / sqrt(L * d)``, shape ``(B, T)`` float32 (``(T,)`` for 2-D embeds).

    Exactly 0.0 on padding positions and on ``ignore``d tokens. Boundaries, padding, ``pad_mask``
    and ``ignore``: see :func:`segment_lengths`.
    """
    rows, cols, dim = _as_rows(embeds)
    lengths = segment_lengths(
        (rows, cols),
        attention_mask=attention_mask,
        position_ids=position_ids,
        cu_seqlens=cu_seqlens,
        pad_mask=pad_mask,
        device=embeds.device,
        ignore=ignore,
    )
    # fl(fl(1 / sqrt(L * d)) * alpha) in float64, rounded once to float32: the same value on every
    # device (torch's float32 sqrt on the CPU is not always correctly rounded) and in the fused
    # kernels (neftune.kernels.scales.scale_value). Padding (L = 0, an inf here) is set to 0.
    wide = torch.float32 if lengths.device.type == "mps" else torch.float64  # MPS has no float64
    scales = (lengths.to(wide) * dim).sqrt_().reciprocal_().mul_(alpha)
    scales = scales.masked_fill_(lengths == 0, 0.0).to(torch.float32)
    return scales if embeds.dim() == 3 else scales.squeeze(0)


def batch_scaled_noise(
    embeds: torch.Tensor,
    alpha: float,
    *,
    distribution: str = "uniform",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """transformers' formula: ``alpha / sqrt(T * d) * eps`` with ``T`` the padded row length.

    For "uniform" the same operations in the same order as
    ``transformers.integrations.neftune``, so the same RNG state gives bit-identical results.
    """
    _, cols, dim = _as_rows(embeds)
    with torch.no_grad():
        if distribution == "uniform":
            mag_norm = alpha / torch.sqrt(torch.tensor(cols * dim))
            return torch.zeros_like(embeds).uniform_(-mag_norm, mag_norm, generator=generator)
        eps = sample_eps(
            embeds.shape, distribution, dtype=embeds.dtype, device=embeds.device, generator=generator
        )
        return eps * (alpha / math.sqrt(cols * dim))


def generator_device(backend: str, embeds: torch.Tensor) -> torch.device:
    """Device of the generator the noise is drawn with: the fused kernel takes its seed from the CPU."""
    return torch.device("cpu") if backend == "triton" else embeds.device


def noised(
    embeds: torch.Tensor,
    alpha: float | torch.Tensor,
    *,
    backend: str,
    distribution: str = "uniform",
    scaling: str = "per_sequence",
    generator: torch.Generator | None = None,
    inplace: bool = False,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    pad_mask: torch.Tensor | None = None,
    ignore: torch.Tensor | None = None,
    need_noise: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The one noise path: ``(embeds + noise, noise)``; every caller (``add_noise``, the hook, the module) uses it.

    Arguments are already checked and ``backend`` resolved (``"torch"`` or ``"triton"``,
    :func:`neftune.kernels.backend.resolve_backend`). ``alpha``: a float, or a 0-d tensor
    while torch.compile traces. ``scaling="batch"`` is transformers' formula (torch only);
    ``"per_sequence"`` scales each token by its sequence's real length (0 on padding).
    ``generator`` must be on :func:`generator_device` (``None``: torch's default RNG). The
    fused kernel returns no separate noise tensor (``None``) and writes into ``embeds`` when
    ``inplace``; the torch path never modifies ``embeds``. The result keeps ``embeds``'
    autograd graph (identity gradient); the noise itself is not differentiated. ``ignore``:
    ``(B, T)`` bool, tokens that get no noise and do not count in ``L`` (per-sequence only).

    Cost over the embeddings: the torch path draws ``eps`` and applies the scales in one fused
    multiply-add (two passes; :func:`neftune.kernels.reference.torch_add_noise`), and returns the
    noise only when ``need_noise`` (which can cost a third pass); the fused kernel reads and
    writes once, its scales computed in the kernel where it can
    (:func:`neftune.kernels.kernel_scales`).
    """
    if scaling == "batch":
        noise = batch_scaled_noise(embeds, alpha, distribution=distribution, generator=generator)
        return embeds + noise, noise
    batch = {
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "cu_seqlens": cu_seqlens,
        "pad_mask": pad_mask,
        "ignore": ignore,
    }
    if backend == "triton":
        seed = draw_seed(generator)
        scales = kernel_scales(embeds, alpha, **batch)
        if scales is None:  # a case the kernel cannot scale by itself: the torch reference's scales
            scales = token_scales(embeds, alpha, **batch)
        return fused_add_noise(embeds, scales, distribution=distribution, seed=seed, inplace=inplace), None
    no_lengths = all(t is None for t in batch.values())
    if no_lengths and isinstance(alpha, Real) and embeds.dim() in (2, 3):
        # One sequence per row: token_scales' value for every token, without its ~10 small kernels.
        scales: torch.Tensor | float = scale_value(embeds.shape[-2], embeds.shape[-1], alpha)
    else:
        scales = token_scales(embeds, alpha, **batch)
    return torch_add_noise(
        embeds, scales, distribution=distribution, generator=generator, need_noise=need_noise
    )


def add_noise(
    embeds: torch.Tensor,
    alpha: float,
    *,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    distribution: str = "uniform",
    generator: torch.Generator | None = None,
    backend: str = "auto",
    pad_mask: torch.Tensor | None = None,
    ignore: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return ``embeds + alpha / sqrt(L * d) * eps`` with ``L`` each sequence's own length.

    ``embeds``: ``(B, T, d)`` or ``(T, d)``. With no mask, positions or ``cu_seqlens``,
    ``L`` is the row length ``T``. ``attention_mask`` may be 0/1, segment ids (packed rows:
    1..k, 0 = padding) or a block mask ``(B, H, T, T)``; ``pad_mask`` marks pad-token ids (a
    sequence of only those is padding); ``ignore`` marks tokens left out without splitting their
    sequence (a VLM's image placeholders); see :func:`segment_lengths`. Padding (mask 0, a
    masked-out block row, past ``cu_seqlens[-1]``) and ignored tokens get exactly zero noise. The result keeps ``embeds``' dtype, device and autograd graph
    (gradient w.r.t. ``embeds`` is the identity); the noise itself is not differentiated.
    Always adds noise: the train/eval decision belongs to the caller (see ``activate``).
    ``embeds`` itself is never modified.

    ``backend``: ``"torch"`` (the reference: draws ``eps`` with ``generator``, or the
    default generator of ``embeds``' device), ``"triton"`` (one fused kernel; its seed is
    drawn from ``generator``, or from torch's default CPU generator, so ``torch.manual_seed``
    still makes it reproducible) or ``"auto"`` (torch: the fused kernel passed on an H200
    but was not faster, see :mod:`neftune.kernels.backend`). Both give noise of the same
    distribution, not the same values.
    """
    if not isinstance(embeds, torch.Tensor):
        raise TypeError(f"embeds must be a torch.Tensor, got {type(embeds).__name__}")
    if not embeds.is_floating_point():
        raise TypeError(f"embeds must be floating point, got {embeds.dtype}")
    alpha = check_alpha(alpha)
    check_choice(distribution, DISTRIBUTIONS, "distribution")
    backend = resolve_backend(check_backend(backend), embeds)
    result, _ = noised(
        embeds,
        alpha,
        backend=backend,
        distribution=distribution,
        generator=generator,
        attention_mask=attention_mask,
        position_ids=position_ids,
        cu_seqlens=cu_seqlens,
        pad_mask=pad_mask,
        ignore=ignore,
        need_noise=False,
    )
    return result
