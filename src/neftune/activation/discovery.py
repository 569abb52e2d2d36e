"""Find the input-embedding module behind whatever wrappers a training stack put around a model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: Attribute names under which distributed / compile wrappers keep the real model.
_WRAPPER_ATTRS = ("module", "_orig_mod", "_fsdp_wrapped_module")
#: Preferred names when a plain module holds several embeddings.
_WRAPPER_CLASSES = {
    "DistributedDataParallel",
    "DataParallel",
    "FullyShardedDataParallel",
    "DeepSpeedEngine",
    "OptimizedModule",
}
_PREFERRED_NAMES = (
    "embed_tokens",
    "wte",
    "word_embeddings",
    "shared",
    "tok_embeddings",
    "embed_in",
    "embedding",
)


class EmbeddingNotFoundError(ValueError):
    """No input embedding could be identified; the message says what was tried."""


@dataclass(frozen=True)
class EmbeddingLocation:
    """Where the input embedding lives.

    ``root``: the model with distributed/compile wrappers removed (PEFT kept).
    ``module``: the embedding module whose output gets the noise.
    ``path``: its dotted name inside ``root`` ("" if it is ``root``).
    ``owners``: modules whose forward receives the batch keyword arguments: ``root``, for PEFT
    the wrapped transformers model, and every module between ``root`` and the embedding (so
    that a direct call of an inner model still hands over its attention mask).
    ``tied``: every ``(path, module)`` to noise: ``module`` first, then the other embedding
    modules sharing its weight (transformers >= 5 gives encoder-decoder models separate
    encoder and decoder embedding modules tied to ``shared``, which itself is never called),
    never a module nested inside another one of them (a wrapper and the embedding it calls).
    """

    root: nn.Module
    module: nn.Module
    path: str
    owners: tuple[nn.Module, ...]
    tied: tuple[tuple[str, nn.Module], ...] = ()
    #: The module whose ``get_input_embeddings()`` named the embedding (None when it was found by
    #: scanning the submodules): asked again later, it tells whether the embedding was replaced.
    locator: nn.Module | None = None


def _nested_in(path: str, others: list[str]) -> bool:
    """Whether the module at ``path`` lies inside one of the modules at ``others``."""
    return any(o != path and (o == "" or path.startswith(o + ".")) for o in others)


def _ancestors(root: nn.Module, path: str) -> list[nn.Module]:
    """The modules from ``root`` down to the parent of the module at ``path`` (outermost first)."""
    found, module = [root], root
    for part in path.split(".")[:-1] if path else []:
        module = module._modules.get(part)
        if module is None:
            break
        found.append(module)
    return found


def _with_tied(
    root: nn.Module, module: nn.Module, path: str, owners: tuple, locator: nn.Module | None = None
) -> EmbeddingLocation:
    """Add the embeddings tied to ``module``'s weight, keeping only the outermost of nested ones.

    A wrapper that exposes the weight of an embedding it calls (PEFT's LoRA ``Embedding`` around
    its ``base_layer``, ``ModulesToSaveWrapper`` around its trainable copy) shares that weight with
    the inner module: noising both would noise each token twice, so only the module whose output
    the model uses (the outermost) is kept. Sibling copies (encoder and decoder embeddings tied to
    ``shared``) are all kept: each is called for its own tokens.
    """
    weight = getattr(module, "weight", None)
    tied = [(path, module)]
    if isinstance(weight, nn.Parameter):
        for name, other in root.named_modules():
            if (
                other is not module
                and getattr(other, "weight", None) is weight
                and (isinstance(other, nn.Embedding) or type(other) is type(module))
            ):
                tied.append((name, other))
    paths = [p for p, _ in tied if p != "<outside the model>"]
    kept = [(p, m) for p, m in tied if not _nested_in(p, paths)]
    if not kept:  # cannot happen (the outermost path is never nested), but never return nothing
        kept = tied[:1]
    path, module = kept[0]
    # Every module on the way from the root to a (main) embedding receives the batch: a pre-hook
    # on each lets direct calls of an inner model (``model.model(...)``) still pass the mask.
    chain = list(owners)
    for p, _ in kept:
        if "decoder" in p.split("."):
            continue  # a decoder stack's attention_mask is the decoder's, read from the root call
        chain.extend(a for a in _ancestors(root, p) if all(a is not c for c in chain))
    return EmbeddingLocation(root, module, path, tuple(chain), tuple(kept), locator)


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DDP / DataParallel / FSDP(1) / DeepSpeed / torch.compile wrappers (not PEFT)."""
    while True:
        children = model._modules
        attr = next((a for a in _WRAPPER_ATTRS if isinstance(children.get(a), nn.Module)), None)
        if attr is None or (type(model).__name__ not in _WRAPPER_CLASSES and len(children) != 1):
            return model
        model = children[attr]


def _peft_base(model: nn.Module) -> nn.Module | None:
    """The transformers model inside a PEFT wrapper, if ``model`` is one."""
    get_base = getattr(type(model), "get_base_model", None)
    if callable(get_base) and hasattr(model, "peft_config"):
        try:
            base = model.get_base_model()
        except Exception:
            return None
        return base if isinstance(base, nn.Module) and base is not model else None
    return None


def _module_path(root: nn.Module, target: nn.Module) -> str:
    for name, mod in root.named_modules(remove_duplicate=False):
        if mod is target:
            return name
    return "<outside the model>"


def find_input_embedding(model: nn.Module) -> EmbeddingLocation:
    """Locate the input embedding of ``model``.

    Tried in order: ``get_input_embeddings()`` (transformers models, PEFT wrappers,
    encoder-decoder models' shared embedding), then the model's ``nn.Embedding``
    submodules (one, or one with a conventional name such as ``embed_tokens``).
    Raises :class:`EmbeddingNotFoundError` listing what was tried.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    root = unwrap_model(model)
    base = _peft_base(root)
    owners = (root,) if base is None else (root, base)
    tried = []

    for candidate in (base, root) if base is not None else (root,):
        getter = getattr(candidate, "get_input_embeddings", None)
        if not callable(getter):
            continue
        try:
            emb = getter()
        except (NotImplementedError, AttributeError) as exc:
            tried.append(f"{type(candidate).__name__}.get_input_embeddings() raised {type(exc).__name__}")
            continue
        if isinstance(emb, nn.Module):
            return _with_tied(root, emb, _module_path(root, emb), owners, candidate)
        tried.append(f"{type(candidate).__name__}.get_input_embeddings() returned {type(emb).__name__}")
    if not tried:
        tried.append("no get_input_embeddings() method")

    embeddings = [(n, m) for n, m in root.named_modules() if isinstance(m, nn.Embedding)]
    if len(embeddings) == 1:
        name, emb = embeddings[0]
        return _with_tied(root, emb, name, owners)
    for preferred in _PREFERRED_NAMES:
        named = [(n, m) for n, m in embeddings if n.rsplit(".", 1)[-1] == preferred]
        if len(named) == 1:
            return _with_tied(root, named[0][1], named[0][0], owners)
    if embeddings:
        names = ", ".join(n or "<root>" for n, _ in embeddings[:6])
        tried.append(
            f"found {len(embeddings)} nn.Embedding modules ({names}) and none is named like an input embedding"
        )
    else:
        tried.append("found no nn.Embedding submodule")
    raise EmbeddingNotFoundError(
        f"could not find the input embedding of {type(model).__name__}: " + "; ".join(tried) + ". "
        "Pass the embedding explicitly: neftune.activate(model, alpha, embedding=model.<path>)."
    )


#: Config attributes naming the placeholder tokens of images, videos and audio clips: a
#: vision-language (or audio-language) model embeds them and then overwrites their embeddings
#: with the encoder's features (transformers' ``get_placeholder_mask`` + ``masked_scatter``), so
#: noise on them is thrown away. ``*_start`` / ``*_end`` / ``boi`` / ``eoi`` tokens are real text
#: tokens and keep their noise.
PLACEHOLDER_ATTRS = (
    "image_token_id",
    "image_token_index",
    "video_token_id",
    "video_token_index",
    "audio_token_id",
    "audio_token_index",
)
#: Model types whose ``image_token_index`` is an ordinary token the model keeps (Mllama attends to
#: the image through cross-attention; its ``<|image|>`` embedding is used as is).
_KEPT_PLACEHOLDERS = frozenset({"mllama"})


def _configs(config: object, depth: int = 0) -> list[object]:
    """``config`` and its sub-configs (``text_config``, ``vision_config``, ``thinker_config``...)."""
    found = [config]
    if depth < 2:
        for value in vars(config).values() if hasattr(config, "__dict__") else ():
            if value is not config and hasattr(value, "model_type") and hasattr(value, "to_dict"):
                found.extend(_configs(value, depth + 1))
    return found


def placeholder_token_ids(model: nn.Module) -> tuple[int, ...]:
    """Ids of the image / video / audio placeholder tokens named in ``model``'s config (sorted; may be empty).

    Read from the ``config`` of the model (PEFT and distributed wrappers looked through) and of
    its sub-configs, under the names in :data:`PLACEHOLDER_ATTRS`. Models whose placeholder
    embedding is used as is (Mllama) give none.
    """
    root = unwrap_model(model)
    holders = [root]
    base = _peft_base(root)
    if base is not None:
        holders.append(base)
    ids: set[int] = set()
    for holder in holders:
        config = getattr(holder, "config", None)
        if not hasattr(config, "to_dict") or getattr(config, "model_type", None) in _KEPT_PLACEHOLDERS:
            continue
        for cfg in _configs(config):
            if getattr(cfg, "model_type", None) in _KEPT_PLACEHOLDERS:
                continue
            for attr in PLACEHOLDER_ATTRS:
                value = getattr(cfg, attr, None)
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    ids.add(value)
    return tuple(sorted(ids))


def placeholder_mask(ids: object, token_ids: tuple[int, ...], shape: tuple[int, ...]) -> torch.Tensor | None:
    """Bool mask of the positions of ``ids`` holding one of ``token_ids``; None if ``ids`` are not token ids of ``shape``."""
    if (
        not token_ids
        or not isinstance(ids, torch.Tensor)
        or ids.is_floating_point()
        or ids.is_complex()
        or tuple(ids.shape) != tuple(shape)
    ):
        return None
    mask = ids == token_ids[0]
    for token in token_ids[1:]:
        mask = mask | (ids == token)
    return mask
