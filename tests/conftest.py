"""Shared fixtures: tiny models built from configs (never downloaded) and noise capture."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess

import pytest
import torch

# Without a GPU, Triton kernels run in its CPU interpreter. The switch must be set before any
# module imports triton (transformers / TRL may do so), so it is set here for the whole session.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Tests never download: a hub id must fail at once instead of retrying the network for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tiny models, two xdist workers on two cores: more torch threads per worker only contend.
torch.set_num_threads(1)

import neftune  # noqa: E402  (after the environment switches above)

VOCAB = 128


@pytest.fixture
def neftune_cache(tmp_path_factory, monkeypatch):
    """One model cache (SmolLM2 tokenizer, tiny preset) for the whole session, outside ~/.cache."""
    monkeypatch.setenv("NEFTUNE_CACHE", str(tmp_path_factory.getbasetemp().parent / "neftune-cache"))


def cli(*args) -> tuple[int, str]:
    """Run the ``neftune`` command in-process; return (exit code, output with whitespace collapsed).

    Fails on an exception other than ``SystemExit`` and on a traceback in the output. Needs the cli
    extra (typer), imported here so that conftest itself does not.
    """
    from typer.testing import CliRunner

    from neftune.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, " ".join(result.output.split())


@contextlib.contextmanager
def interruptible_process(command: list[str], **popen_kwargs):
    """``subprocess.Popen(command)`` whose child takes Ctrl-C (SIGINT) the default way, killed on exit.

    A suite started in the background (``nohup``, ``&`` in a script) ignores SIGINT, a child inherits
    that, and Python then never raises KeyboardInterrupt: the child's SIGINT action is reset here.
    Killing it on exit keeps a failed test from leaving a training running through the rest of the suite.
    """
    proc = subprocess.Popen(
        command, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen_kwargs
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def load_script(relative: str):
    """Import a file of the repository that is not a package module (e.g. ``benchmarks/soak.py``)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class InterruptAtSave:
    """A TrainerCallback that stops training (like Ctrl-C) right after the first checkpoint."""

    def __getattr__(self, name):
        if not name.startswith("on_"):
            raise AttributeError(name)

        def handler(args, state, control, **kwargs):
            if name == "on_save":
                raise KeyboardInterrupt("stop after the first checkpoint")
            return control

        return handler


def tiny_trainer_kwargs(tmp_path, **overrides) -> dict:
    """``TrainingArguments`` keywords for a few quiet CPU steps of a tiny model; ``overrides`` win."""
    base = dict(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        learning_rate=1e-3,
    )
    return {**base, **overrides}


LM_TEXTS = ["hi", "hello world", "a much longer sentence, with several words in it.", "short one"]


def lm_dataset(n_rows: int = 8):
    """(char tokenizer, ``datasets.Dataset`` of ``input_ids`` rows of varying length)."""
    import datasets

    tok = char_tokenizer()
    rows = [tok(LM_TEXTS[i % len(LM_TEXTS)] + "<eos>") for i in range(n_rows)]
    return tok, datasets.Dataset.from_dict({"input_ids": [r["input_ids"] for r in rows]})


def plain_trainer(tmp_path, model=None, callbacks=(), trainer_cls=None, **kw):
    """A ``transformers.Trainer`` for a few padded causal-LM steps of a tiny Llama (or ``model``)."""
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    tok, ds = lm_dataset()
    return (trainer_cls or Trainer)(
        model=model if model is not None else tiny_llama(),
        args=TrainingArguments(**tiny_trainer_kwargs(tmp_path, **kw)),
        train_dataset=ds,
        eval_dataset=ds,
        data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
        callbacks=list(callbacks),
    )


def char_tokenizer():
    """A character-level fast tokenizer built in memory (nothing downloaded)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = "abcdefghijklmnopqrstuvwxyz .,?!"
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


# Set on the model by accelerate.prepare and by TRL's SFTTrainer (its own hooks/forward patch), not by us.
TRAINER_ATTRS = {
    "_gradient_checkpointing_func",  # TRL turns gradient checkpointing on by default
    "_is_accelerate_prepared",
    "_original_forward",
    "_require_grads_hook",
    "_require_grads_hooks",
}


def hook_snapshot(model: torch.nn.Module) -> dict:
    """Every module's hook dicts (forward, forward pre, backward) and attribute names."""
    snap = {}
    for name, m in model.named_modules():
        snap[name] = (
            tuple(m._forward_hooks),
            tuple(m._forward_pre_hooks),
            tuple(m._backward_hooks),
            tuple(sorted(m.__dict__)),
        )
    return snap


def _trainer_hook(fn) -> bool:
    """transformers' ``enable_input_require_grads`` hook (gradient checkpointing in TRL)."""
    return getattr(fn, "__name__", "") == "make_inputs_require_grads"


def assert_no_leftovers(before: dict, model: torch.nn.Module) -> None:
    """Hook dicts unchanged on every module (apart from transformers' own require-grads hook,
    which TRL leaves on the embedding); no attribute added that is ours (``TRAINER_ATTRS``
    lists what the Trainer / TRL / accelerate add themselves)."""
    after = hook_snapshot(model)
    assert after.keys() == before.keys()
    modules = dict(model.named_modules())
    for name in before:
        for i, hooks in enumerate((modules[name]._forward_hooks,)):
            added = [k for k in after[name][i] if k not in before[name][i]]
            assert all(_trainer_hook(hooks[k]) for k in added), f"forward hooks left on {name!r}"
        assert after[name][1:3] == before[name][1:3], f"hooks left on {name!r}"
        added = set(after[name][3]) - set(before[name][3])
        assert added <= TRAINER_ATTRS, f"attributes left on {name!r}: {added - TRAINER_ATTRS}"


def neftune_hooks(model: torch.nn.Module) -> list[str]:
    """Every forward hook / pre-hook on any module that neftune registered."""
    from neftune.activation.hooks import _Hook, _Inert

    found = []
    for name, module in model.named_modules():
        for kind in ("_forward_hooks", "_forward_pre_hooks"):
            for fn in getattr(module, kind).values():
                if isinstance(fn, _Hook | _Inert):
                    found.append(f"{name or '<root>'}.{kind}")
    return found


HIDDEN = 64

#: z-score bound used by every statistical test: P(|Z| > 6) ~ 2e-9 per check, so even
#: thousands of checks per run fail by chance with probability < 1e-5.
Z = 6.0

#: Var(eps^2) = E[eps^4] - E[eps^2]^2 per distribution: 1/5 - 1/9 = 4/45 (uniform),
#: 3 - 1 = 2 (gaussian), 0 (symmetric: eps^2 == 1).
VAR_EPS_SQ = {"uniform": 4.0 / 45.0, "gaussian": 2.0, "symmetric": 0.0}

#: Level of every Kolmogorov-Smirnov test here: a correct implementation fails one with probability 0.001.
KS_LEVEL = 1e-3


def ks_two_sample_p(a: torch.Tensor, b: torch.Tensor) -> float:
    """p-value of scipy's two-sample Kolmogorov-Smirnov test that ``a`` and ``b`` share a distribution.

    Asymptotic (the samples have thousands of values); conservative for discrete samples (the
    +-1 noise), whose statistic is stochastically smaller than for continuous ones.
    """
    from scipy import stats

    x, y = a.flatten().double().numpy(), b.flatten().double().numpy()
    return float(stats.ks_2samp(x, y, method="asymp").pvalue)


def expected_sq_norm(alpha: float, distribution: str) -> float:
    """E||noise||^2 of one sequence = alpha^2 * Var(eps)."""
    return alpha**2 * neftune.noise.EPS_VARIANCE[distribution]


def sq_norm_sd(alpha: float, distribution: str, n_elements: int) -> float:
    """sd of ||noise||^2 for one sequence of n = L*d elements.

    ||noise||^2 = (alpha^2 / n) * sum_i eps_i^2, so Var = alpha^4 / n * Var(eps^2) (``VAR_EPS_SQ``).
    """
    return alpha**2 * math.sqrt(VAR_EPS_SQ[distribution] / n_elements)


def assert_sequence_norm(noise_seq: torch.Tensor, alpha: float, distribution: str, rel_slack: float = 1e-4):
    """``noise_seq``: (L, d) noise of one sequence; its squared norm within Z sd of the expectation."""
    n = noise_seq.numel()
    sq = noise_seq.double().pow(2).sum().item()
    mean = expected_sq_norm(alpha, distribution)
    tol = Z * sq_norm_sd(alpha, distribution, n) + rel_slack * mean
    assert abs(sq - mean) <= tol, f"||noise||^2={sq:.5f}, expected {mean:.5f} +- {tol:.5f} (L*d={n})"


def tiny_llama(dtype=torch.float32, **kw):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        **kw,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).to(dtype)


def tiny_gpt2(dtype=torch.float32):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(
        GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=2, n_head=4, n_positions=512)
    ).to(dtype)


def tiny_bert(dtype=torch.float32):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=512,
    )
    return BertForMaskedLM(cfg).to(dtype)


def tiny_t5(dtype=torch.float32):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=VOCAB,
        d_model=HIDDEN,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_heads=4,
        decoder_start_token_id=0,
        pad_token_id=0,
    )
    return T5ForConditionalGeneration(cfg).to(dtype)


def tiny_gemma(dtype=torch.float32):
    from transformers import GemmaConfig, GemmaForCausalLM

    torch.manual_seed(0)
    cfg = GemmaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        pad_token_id=0,
    )
    return GemmaForCausalLM(cfg).to(dtype)


def tiny_lora_llama(dtype=torch.float32):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(tiny_llama(dtype), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))


MODEL_FACTORIES = {
    "llama": tiny_llama,
    "gpt2": tiny_gpt2,
    "bert": tiny_bert,
    "t5": tiny_t5,
    "lora-llama": tiny_lora_llama,
}


class NoiseRecorder:
    """Records, for every call of an embedding module, the noise our hook added.

    Registered after ``neftune.activate`` so it sees the noised output; the clean
    output is recomputed by calling the module in eval mode on the same input.
    """

    def __init__(self, embedding: torch.nn.Module):
        self.embedding = embedding
        self.noise: list[torch.Tensor] = []
        self._handle = embedding.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad(), self._paused():
                clean = module(*args)
        finally:
            module.train(was_training)
        self.noise.append((output.detach() - clean).float())

    def _paused(self):
        import contextlib

        @contextlib.contextmanager
        def paused():
            handle, self._handle = self._handle, None
            handle.remove()
            try:
                yield
            finally:
                self._handle = self.embedding.register_forward_hook(self._hook)

        return paused()

    def remove(self):
        if self._handle is not None:
            self._handle.remove()


def padded_batch():
    """Right-padded batch of 3 sequences (lengths 5, 12, 2) in a (3, 12) layout, same ids every call."""
    lengths = [5, 12, 2]
    ids = torch.randint(1, VOCAB, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(3, 12, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return ids * mask, mask, lengths


def tiny_experiment(**kw):
    """A 2-arm experiment (alphas 0 and 5, seed 0) of 2 steps on the tiny model; ``kw`` overrides."""
    from neftune.experiments.plan import ExperimentConfig
    from neftune.finetune.training import TrainConfig

    train = TrainConfig(
        model="tiny", batch_size=2, max_steps=2, max_length=256, logging_steps=1, save_steps=1
    )
    base = {
        "alphas": [0.0, 5.0],
        "seeds": [0],
        "train": train,
        "eval": {"n_generate": 1, "max_new_tokens": 2, "ifeval_max_new_tokens": 2, "n_train_loss": 4},
        "curve_every": 1,
        "curve_records": 2,
    }
    base.update(kw)
    return ExperimentConfig(**base)
