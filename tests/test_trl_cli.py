"""``neftune trl sft``: TRL's own sft script (its parser, its ``main``) with neftune's callback.

The packed run goes through :func:`neftune.integrations.trl_cli.sft` (what each process that
``neftune trl sft`` launches calls) with the independent probe of framework_tests/probe.py; the
refusals go through the ``neftune`` command itself (they are decided before any process starts).
framework_tests/trl/run.sh runs the whole command (accelerate launch) and TRL's own hook beside it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("accelerate")

from conftest import char_tokenizer, cli, tiny_llama

FRAMEWORK_TESTS = Path(__file__).resolve().parents[1] / "framework_tests"
ALPHA = 5.0


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """A tiny Llama + character tokenizer folder and a text dataset folder (no hub)."""
    root = tmp_path_factory.mktemp("trl-cli")
    model_dir, data_dir = root / "model", root / "data"
    tiny_llama().save_pretrained(model_dir)
    char_tokenizer().save_pretrained(model_dir)
    data_dir.mkdir()
    words = [
        "the",
        "noise",
        "is",
        "added",
        "to",
        "each",
        "packed",
        "sequence",
        "by",
        "its",
        "own",
        "length,",
        "never",
        "to",
        "padding",
    ]
    rows = [{"text": " ".join(words[i % 5 : i % 5 + 3 + (7 * i) % 12])} for i in range(12)]
    (data_dir / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return model_dir, data_dir


def sft_args(tiny_setup, out: Path, *extra: str) -> list[str]:
    model_dir, data_dir = tiny_setup
    return [
        "--model_name_or_path", str(model_dir), "--dataset_name", str(data_dir),
        "--output_dir", str(out), "--packing", "--max_length", "96",
        "--per_device_train_batch_size", "2", "--max_steps", "2", "--logging_steps", "1",
        "--save_strategy", "no", "--report_to", "none", "--use_cpu", "--dataloader_num_workers", "0",
        "--dtype", "float32", *extra,
    ]  # fmt: skip


def probe_callback(max_calls: int):
    sys.path.insert(0, str(FRAMEWORK_TESTS))
    from probe import NoiseProbe
    from transformers import TrainerCallback

    class ProbeCallback(TrainerCallback):
        probe = None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.probe = NoiseProbe(model, max_calls=max_calls)

    return ProbeCallback()


@pytest.mark.slow
def test_packed_sft_gets_per_sequence_noise(tiny_setup, tmp_path):
    """TRL's packing (BFD, padding-free: position_ids restart per sequence): each packed sequence's
    noise norm is alpha/sqrt(3) within the tolerance derived in framework_tests/noise_check.py."""
    from neftune.integrations.trl_cli import sft

    sys.path.insert(0, str(FRAMEWORK_TESTS))
    from noise_check import rel_tolerance, verdict

    probe = probe_callback(max_calls=2)
    sft([*sft_args(tiny_setup, tmp_path / "out"), "--neftune_alpha", str(ALPHA), "--neftune_seed", "0"],
        callbacks=[probe])  # fmt: skip
    results = probe.probe.results()
    assert verdict(results, ALPHA) == [], results
    lengths = [length for call in results for length, _ in call["sequences"]]
    assert len(lengths) >= 4  # several sequences packed per row
    assert rel_tolerance(min(lengths)) <= 0.15
    assert (tmp_path / "out" / "model.safetensors").exists()  # TRL's main went on to save the model


def test_refuses_transformers_hook_beside_ours(tiny_setup, tmp_path):
    code, out = cli("trl", "sft", *sft_args(tiny_setup, tmp_path / "o"), "--neftune_noise_alpha", "5")
    assert code == 2
    assert "--neftune_noise_alpha 5" in out and "--neftune_alpha" in out


def test_refuses_transformers_hook_in_config_yaml(tiny_setup, tmp_path):
    model_dir, data_dir = tiny_setup
    config = tmp_path / "sft.yaml"
    config.write_text(
        f"model_name_or_path: {model_dir}\ndataset_name: {data_dir}\noutput_dir: {tmp_path / 'o'}\n"
        "use_cpu: true\nneftune_noise_alpha: 5\nneftune_alpha: 5\n"
    )
    code, out = cli("trl", "sft", "--config", str(config))
    assert code == 2 and "neftune_noise_alpha" in out


def test_reports_trls_own_value_checks_in_one_line(tiny_setup, tmp_path):
    """A value TRL / transformers reject while parsing (bf16 without a GPU): their message, no traceback."""
    code, out = cli(
        "trl", "sft", *sft_args(tiny_setup, tmp_path / "o"), "--bf16", "true", "--use_cpu", "false"
    )
    assert code == 2 and "bf16" in out


def test_refuses_bad_neftune_value(tiny_setup, tmp_path):
    code, out = cli("trl", "sft", *sft_args(tiny_setup, tmp_path / "o"), "--neftune-alpha", "-1")
    assert code == 2 and "alpha" in out and "neftune" in out


def test_help_is_trls_with_neftune_options(capsys):
    from neftune.integrations.trl_cli import make_parser

    text = make_parser().format_help()
    assert "--neftune_alpha" in text and "--packing" in text and "--model_name_or_path" in text


def test_help_through_neftune_exits_0_without_traceback():
    # argparse's SystemExit(0) passes through the one-line-error wrapper (it used to die looking up
    # click's Abort where typer >= 0.20 does not keep it)
    code, out = cli("trl", "sft", "-h")
    assert code == 0 and "--neftune_alpha" in out and "--model_name_or_path" in out


def test_neftune_options_become_the_config(tiny_setup, tmp_path):
    from neftune.config import NEFTuneConfig
    from neftune.integrations.trl_cli import _split, make_parser

    argv = sft_args(tiny_setup, tmp_path / "o")
    argv += ["--neftune-alpha", "10", "--neftune_seed", "3", "--neftune_ignore_token_ids", "7", "5"]
    _, training_args, config = _split(make_parser().parse_args_and_config(argv, fail_with_unknown_args=False))
    assert config == NEFTuneConfig(alpha=10.0, seed=3, ignore_token_ids=(5, 7))
    assert training_args.packing and training_args.neftune_noise_alpha is None
