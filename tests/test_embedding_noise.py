"""`neftune analyze` metrics on hand-built embeddings with known answers, and one run on the tiny preset."""

from __future__ import annotations

import json
import math

import pytest
import torch

from neftune.experiments import embedding_noise as en
from neftune.experiments import nearest

from conftest import VAR_EPS_SQ, Z, tiny_gemma

METRIC_KEYS = {
    "alpha",
    "n_tokens",
    "noise_l2_mean",
    "noise_l2_rms",
    "noise_l2_expected_rms",
    "cosine_mean",
    "cosine_p5",
    "snr_mean",
    "snr_median",
    "snr_db_median",
    "flip_rate_l2",
    "flip_rate_cos",
    "n_flips_l2",
    "n_flips_cos",
    "flip_possible_rate",
    "flip_examples_l2",
}


def one_hot_table(vocab: int, r: float) -> torch.Tensor:
    """Rows r * e_v: orthogonal, all of norm r, pairwise distance r * sqrt(2)."""
    return r * torch.eye(vocab)


def random_sequences(n: int, vocab: int, lengths: list[int], seed: int = 0) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (lengths[i % len(lengths)],), generator=gen).tolist() for i in range(n)]


# --------------------------------------------------------------------------- per-token geometry


def test_token_geometry_known_vector_and_noise_norm():
    # x = (3, 4, 0, ...) has norm 5; noise of norm m orthogonal to x gives
    # cos = 5 / sqrt(25 + m^2), SNR = 5 / m, noise L2 = m, exactly.
    d = 8
    clean = torch.zeros(3, d, dtype=torch.float64)
    clean[:, 0], clean[:, 1] = 3.0, 4.0
    noise = torch.zeros(3, d, dtype=torch.float64)
    norms = torch.tensor([0.5, 5.0, 12.0], dtype=torch.float64)
    noise[:, 2] = norms
    geo = en.token_geometry(clean, clean + noise)
    torch.testing.assert_close(geo["noise_l2"], norms)
    torch.testing.assert_close(geo["cosine"], 5.0 / torch.sqrt(25.0 + norms**2))
    torch.testing.assert_close(geo["snr"], 5.0 / norms)
    same = en.token_geometry(clean[:1].float(), clean[:1].float())
    assert same["snr"].item() == math.inf and same["cosine"].item() == 1.0
    assert en.token_geometry(torch.zeros(1, d), torch.ones(1, d))["cosine"].item() == 0.0


def test_unit_angle_accurate_near_zero_and_for_zero_rows():
    a = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 1e-9]], dtype=torch.float64)
    assert nearest.unit_angle(a, b).item() == pytest.approx(1e-9, rel=1e-6)  # acos(cos) would give 0
    assert nearest.unit_angle(a, torch.zeros(1, 2)).item() == pytest.approx(math.pi / 2)


# --------------------------------------------------------------------------- noise magnitude


@pytest.mark.parametrize("distribution", ["uniform", "gaussian"])
def test_noise_l2_per_token_matches_the_math(distribution):
    # Token t of a length-L sequence: ||n_t||^2 = (alpha^2 / (L d)) sum_{i<=d} eps_i^2, so
    # E||n_t||^2 = alpha^2 Var(eps) / L and Var||n_t||^2 = (alpha^2 / (L d))^2 d Var(eps^2)
    # (Var(eps^2) = 4/45 uniform, 2 gaussian). Tokens are independent, so the mean of
    # ||n_t||^2 over N tokens has variance sum_t Var||n_t||^2 / N^2: Z of those sd bound it.
    d, alpha = 32, 10.0
    table = torch.randn(50, d, generator=torch.Generator().manual_seed(1))
    seqs = random_sequences(60, 50, [3, 17, 40])  # mixed lengths: padded batches with a mask
    result = en.analyze_embeddings(table, seqs, [0.0, alpha], distribution=distribution, batch_size=7)
    row = result["metrics"][1]
    lengths = torch.tensor([len(s) for s in seqs for _ in s], dtype=torch.float64)
    n = lengths.numel()
    expected = float((alpha**2 * en.EPS_VARIANCE[distribution] / lengths).mean())
    sd = math.sqrt(float(((alpha**2 / (lengths * d)) ** 2 * d * VAR_EPS_SQ[distribution]).sum())) / n
    assert row["noise_l2_expected_rms"] ** 2 == pytest.approx(expected)
    assert abs(row["noise_l2_rms"] ** 2 - expected) <= Z * sd, (row["noise_l2_rms"] ** 2, expected, sd)
    assert result["metrics"][0]["noise_l2_rms"] == 0.0
    assert result["metrics"][0]["snr_median"] is None  # no noise: infinite SNR is reported as null


def test_same_eps_draws_for_every_alpha():
    table = torch.randn(40, 16, generator=torch.Generator().manual_seed(2))
    seqs = random_sequences(10, 40, [5, 9])
    result = en.analyze_embeddings(table, seqs, [5.0, 10.0], seed=3)
    a, b = result["metrics"]
    assert b["noise_l2_mean"] == pytest.approx(2 * a["noise_l2_mean"], rel=1e-5)


# --------------------------------------------------------------------------- nearest-token flips


def test_no_flip_possible_when_uniform_noise_is_below_half_the_row_spacing():
    # One-hot rows r e_v: the L2 (and cosine) nearest row of r e_t + n is argmax_v (r [v = t] + n_v),
    # so a flip needs n_v - n_t > r. Uniform noise elements are bounded by alpha / sqrt(L d):
    # with that below r / 2 no flip can happen, whatever the draw.
    vocab, length, alpha = 64, 4, 15.0
    bound = alpha / math.sqrt(length * vocab)  # 0.9375
    r = 2.0
    assert bound < r / 2
    seqs = random_sequences(300, vocab, [length])
    result = en.analyze_embeddings(one_hot_table(vocab, r), seqs, [alpha], seed=5)
    row = result["metrics"][0]
    assert row["n_flips_l2"] == 0 and row["n_flips_cos"] == 0
    assert row["n_tokens"] == 300 * length
    # Yet every token's noise is longer than half the gap r / sqrt(2): ||n||^2 = (alpha^2 / (L d))
    # sum of 64 eps^2 has mean 18.75 and sd 2.10, while < 2 would be 8 sd below. Long noise is
    # not enough; a flip needs it concentrated on one coordinate.
    assert result["vocabulary"]["half_gap_l2_median"] == pytest.approx(r * math.sqrt(2) / 2)
    assert row["flip_possible_rate"] == 1.0


def test_flip_rate_matches_the_exact_probability_when_noise_is_large():
    # Same geometry, r small: with s = alpha / sqrt(L d) and a = r / (2 s), n_t's CDF value
    # p ~ U(0, 1) and each of the V - 1 other elements stays below n_t + r with probability
    # min(1, p + a), so P(no flip) = int_0^1 min(1, p + a)^(V-1) dp = a + (1 - a^V) / V.
    # Tokens are independent: flips ~ Binomial(N, f); Z sd bound.
    vocab, length, alpha, r = 64, 8, 10.0, 0.2
    s = alpha / math.sqrt(length * vocab)
    a = r / (2 * s)
    f = 1 - a - (1 - a**vocab) / vocab
    seqs = random_sequences(200, vocab, [length], seed=1)
    row = en.analyze_embeddings(one_hot_table(vocab, r), seqs, [alpha], seed=7)["metrics"][0]
    n = row["n_tokens"]
    tol = Z * math.sqrt(n * f * (1 - f))
    assert abs(row["n_flips_l2"] - n * f) <= tol, (row["n_flips_l2"], n * f, tol)
    assert row["n_flips_cos"] == row["n_flips_l2"]  # equal norms: cosine ranks rows the same way
    assert row["flip_examples_l2"] and row["flip_examples_l2"][0][2] >= 1


def test_duplicate_rows_are_not_flips_and_are_reported_ambiguous():
    # One-hot rows (no flip possible at this alpha, see above) plus an exact copy of rows 3
    # and 7 (ids 64, 65) and a near copy of row 9 (id 66). Noise lands on either twin at
    # random, or (exact copies) always on the lower id: by index that would be a "flip".
    vocab, length, alpha, r = 64, 4, 15.0, 2.0
    table = torch.cat([one_hot_table(vocab, r), one_hot_table(vocab, r)[[3, 7, 9]]])
    table[66, 10] = 1e-6
    twins = [3, 7, 9, 64, 65, 66]
    seqs = [[twins[(i + j) % 6] for j in range(length)] for i in range(60)]
    seqs += random_sequences(40, vocab, [length])
    result = en.analyze_embeddings(table, seqs, [0.0, alpha], seed=11)
    for row in result["metrics"]:
        assert row["n_flips_l2"] == 0 and row["n_flips_cos"] == 0
    vocab_info = result["vocabulary"]
    assert vocab_info["n_ambiguous_distinct_l2"] == 6
    assert vocab_info["n_ambiguous_distinct_cos"] == 6
    assert vocab_info["n_clean_nearest_not_self_l2"] == 2  # 64 -> 3 and 65 -> 7; 66 is not exactly 9
    assert set(vocab_info["ambiguous_token_ids"]) == set(twins)
    # The test exercises the handling: by raw index, the noisy twins do move.
    draw = en.noisy_tokens(table, seqs[:60], alpha, generator=torch.Generator().manual_seed(11))
    raw_l2, _ = nearest.nearest_rows(draw.noisy, table)
    assert bool((raw_l2 != draw.token_ids).any())


def test_clustered_table_search_equals_brute_force():
    # Rows in tight clusters (so many rows are candidates), exact duplicates and a zero row;
    # the pruned search must match a plain float32 scan.
    gen = torch.Generator().manual_seed(4)
    centers = torch.randn(12, 24, generator=gen) * 3
    table = centers[torch.randint(0, 12, (400,), generator=gen)] + 0.3 * torch.randn(400, 24, generator=gen)
    table[10] = table[20]
    table[30] = 0.0
    token_ids = torch.randint(0, 400, (300,), generator=gen)
    token_ids[:5] = 30
    queries = [table[token_ids] + scale * torch.randn(300, 24, generator=gen) for scale in (0.05, 0.3, 2.0)]
    _, found = nearest.search_neighbours(table, token_ids, queries, chunk_tokens=64)
    for q, (l2, cos) in zip(queries, found):
        ref_l2, ref_cos = nearest.nearest_rows(q, table, chunk_size=100)
        for got, ref in ((l2, ref_l2), (cos, ref_cos)):
            same = (got == ref) | (table[got] == table[ref]).all(1)  # exact twins may swap
            assert bool(same.all()), int((~same).sum())


def test_dot_error_bound_holds_for_float32_products():
    gen = torch.Generator().manual_seed(0)
    q, w = torch.randn(200, 576, generator=gen), torch.randn(300, 576, generator=gen) * 5
    err = ((q @ w.T).double() - q.double() @ w.double().T).abs()
    bound = nearest.dot_error_bound(576) * q.norm(dim=1, keepdim=True).double() * w.norm(dim=1).double()
    assert bool((err <= bound).all())


# --------------------------------------------------------------------------- inputs and the model layer


def test_bad_inputs_raise_clear_errors():
    table = torch.randn(10, 4)
    with pytest.raises(en.AnalyzeError, match="token ids"):
        en.analyze_embeddings(table, [[1, 2, 10]])
    with pytest.raises(en.AnalyzeError, match="sequences is empty"):
        en.analyze_embeddings(table, [[]])
    with pytest.raises(ValueError, match=">= 0"):
        en.analyze_embeddings(table, [[1]], [-1.0])
    with pytest.raises(ValueError, match="distribution"):
        en.AnalyzeConfig(distribution="laplace").validate()
    with pytest.raises(en.AnalyzeError, match="alphas is empty"):
        en.AnalyzeConfig(alphas=()).validate()
    with pytest.raises(en.AnalyzeError, match="n_sequences"):
        en.AnalyzeConfig(n_sequences=0).validate()


def test_embedding_table_uses_the_scaled_forward_output():
    model = tiny_gemma()
    table, info = en.embedding_table(model, chunk_size=50)
    emb = model.get_input_embeddings()
    with torch.no_grad():
        torch.testing.assert_close(table, emb(torch.arange(table.shape[0])))
    assert info["output_to_weight_norm_ratio"] == pytest.approx(math.sqrt(model.config.hidden_size))


@pytest.mark.usefixtures("neftune_cache")
def test_run_analyze_on_tiny_preset(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    alphas = (0.0, 5.0, 15.0)
    stages = set()
    cfg = en.AnalyzeConfig(model="tiny", alphas=alphas, n_sequences=6, out=str(tmp_path / "an"))
    result = en.run_analyze(cfg, progress=lambda stage, done, total: stages.add(stage))
    assert stages == {"noise", "nearest"}
    saved = json.loads((tmp_path / "an" / en.ANALYZE_JSON).read_text())
    assert [m["alpha"] for m in saved["metrics"]] == list(alphas)
    for row in saved["metrics"]:
        assert set(row) >= METRIC_KEYS
    assert saved["lengths"]["n_sequences"] == 6 and saved["data"]["used"] == 6
    assert saved["config"]["model"] == "tiny" and "torch" in saved["versions"]
    assert saved["metrics"] == json.loads(json.dumps(result["metrics"]))
    image = imread(tmp_path / "an" / en.ANALYZE_PNG)
    assert image.shape[0] > 400 and image.shape[1] > 600
    non_white = (image[..., :3] < 0.9).any(-1).mean()
    assert 0.02 < non_white < 0.9  # drawn on, not blank and not a solid fill
