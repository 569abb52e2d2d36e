"""`neftune viz`: word selection, per-sequence noise on single tokens, projections, and a tiny-preset run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from neftune.experiments import projection as pj
from neftune.noise import EPS_VARIANCE

from conftest import VAR_EPS_SQ, Z


class FakeTokenizer:
    """Splits on the leading space and on '#': "a#b" is two tokens, " a" is one."""

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def encode(self, text, add_special_tokens=False):
        pieces = [p for p in text.replace("#", "|#").split("|") if p]
        return [self.vocab.setdefault(p, len(self.vocab)) for p in pieces]


def test_single_token_words_keeps_words_single_both_ways_and_says_why_others_dropped():
    tok = FakeTokenizer()
    groups = {"g1": ["red", "blue#green", "red"], "g2": ["cat"]}
    points, dropped = pj.single_token_words(tok, groups, form="space")
    assert [(p["group"], p["word"], p["text"]) for p in points] == [
        ("g1", "red", " red"),
        ("g2", "cat", " cat"),
    ]
    assert points[0]["token_id"] == tok.encode(" red")[0]
    reasons = {d["word"]: d["reason"] for d in dropped}
    assert reasons["blue#green"] == "'blue#green' is 2 tokens; ' blue#green' is 2 tokens"
    assert reasons["red"] == "same token as an earlier word"
    bare, _ = pj.single_token_words(tok, groups, form="bare")
    assert bare[0]["token_id"] == tok.encode("red")[0] != points[0]["token_id"]
    with pytest.raises(ValueError, match="form"):
        pj.single_token_words(tok, groups, form="both")


@pytest.mark.parametrize("distribution", ["uniform", "gaussian"])
def test_noise_as_in_sequence_has_the_per_sequence_scale(distribution):
    # Each point gets the noise of one token of a length-L sequence: elements alpha / sqrt(L d) eps,
    # so E||n||^2 = alpha^2 Var(eps) / L, and the mean over P points has sd
    # (alpha^2 / L) sqrt(Var(eps^2) / (d P)) (Var(eps^2) = 4/45 uniform, 2 gaussian).
    points, d, length, alpha = 500, 32, 10, 5.0
    clean = torch.randn(points, d, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    # Small chunks, to cover the chunked path.
    noisy = pj.noise_as_in_sequence(
        clean, alpha, length, distribution=distribution, generator=gen, max_elements=length * d * 64
    )
    noise = (noisy - clean).double()
    mean_sq = noise.pow(2).sum(1).mean().item()
    expected = alpha**2 * EPS_VARIANCE[distribution] / length
    sd = alpha**2 / length * math.sqrt(VAR_EPS_SQ[distribution] / (d * points))
    assert abs(mean_sq - expected) <= Z * sd
    if distribution == "uniform":
        assert noise.abs().max().item() <= alpha / math.sqrt(length * d) * (1 + 1e-6)


def test_project_2d_pca_fits_clean_and_tsne_keeps_separated_clusters_apart():
    gen = torch.Generator().manual_seed(3)
    centers = torch.eye(3, 16) * 40
    clean = torch.cat([c + torch.randn(6, 16, generator=gen) for c in centers])
    coords = pj.project_2d(clean, clean.clone(), seed=0)
    assert coords["pca_noisy"] == coords["pca_clean"]  # same input, same projection
    pca = torch.tensor(coords["pca_clean"], dtype=torch.float64)
    torch.testing.assert_close(pca.mean(0), torch.zeros(2, dtype=pca.dtype), atol=1e-9, rtol=0)
    assert coords["tsne_perplexity"] == pytest.approx((36 - 1) / 3)
    # Clusters 40 apart with unit spread: each clean point's nearest t-SNE neighbour
    # (among the other clean points) is in its own cluster.
    tsne = torch.tensor(coords["tsne_clean"])
    dist = torch.cdist(tsne, tsne) + torch.eye(18) * 1e9
    cluster = torch.arange(18) // 6
    assert bool((cluster[dist.argmin(1)] == cluster).all())
    with pytest.raises(ValueError, match="at least 3"):
        pj.project_2d(clean[:2], clean[:2])


def test_tsne_perplexity_stays_below_the_point_count():
    assert pj.tsne_perplexity(200) == 30.0
    assert pj.tsne_perplexity(10) == 3.0
    assert pj.tsne_perplexity(4) == 2.0 < 4


def test_viz_config_errors():
    with pytest.raises(ValueError, match=">= 0"):
        pj.VizConfig(alpha=-1).validate()
    with pytest.raises(ValueError, match="length"):
        pj.VizConfig(length=0).validate()
    with pytest.raises(ValueError, match="form"):
        pj.VizConfig(form="sideways").validate()
    with pytest.raises(ValueError, match="groups"):
        pj.VizConfig(groups={"g": [1, 2]}).validate()


@pytest.mark.usefixtures("neftune_cache")
def test_run_viz_on_tiny_preset(tmp_path):
    pytest.importorskip("sklearn")
    from matplotlib.image import imread

    cfg = pj.VizConfig(model="tiny", alpha=10.0, n_sequences=8, out=str(tmp_path / "viz"))
    result = pj.run_viz(cfg)
    saved = json.loads((tmp_path / "viz" / pj.VIZ_JSON).read_text())
    assert saved["length"] == result["length"] >= 1 and saved["length_source"].startswith("median of 8")
    # SmolLM2's tokenizer splits " 7" into a space and a digit: the digit is dropped, with the reason.
    assert {"group": "numbers", "word": "7", "reason": "' 7' is 2 tokens"} in saved["dropped"]
    assert saved["groups"] == {k: list(v) for k, v in pj.DEFAULT_GROUPS.items()}
    assert {p["group"] for p in saved["points"]} == set(pj.DEFAULT_GROUPS)
    for p in saved["points"]:
        assert {
            "pca_clean",
            "pca_noisy",
            "tsne_clean",
            "tsne_noisy",
            "noise_l2",
            "nearest_after_noise",
        } <= set(p)
        assert p["text"].startswith(" ")
    image = imread(tmp_path / "viz" / pj.VIZ_PNG)
    non_white = (image[..., :3] < 0.9).any(-1).mean()
    assert 0.01 < non_white < 0.9
