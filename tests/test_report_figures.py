"""The report's figures from hand-made frames and attention maps: each is a PNG, also for a baseline this
version has no label for, and for a study without siamese or aux grid cells (matplotlib: seconds each)."""

import numpy as np
import pytest

import pandas as pd

from report_frames import baseline, cell, replicate, study
from deepdiff.attention import AttentionMaps
from deepdiff_study.report import figures, seeds

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def drawn(monkeypatch):
    """The tick labels of every axes saved, by file name."""
    seen = {}
    save = figures._pyplot().Figure.savefig

    def savefig(fig, path, **kwargs):
        seen[path.name] = [[t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes]
        seen[f"{path.name} images"] = [image for ax in fig.axes for image in ax.images]
        seen[f"{path.name} axes"] = list(fig.axes)
        return save(fig, path, **kwargs)

    monkeypatch.setattr(figures._pyplot().Figure, "savefig", savefig)
    return seen


def _study():
    cells = [cell(p, v, m, g, valid=0.5, test=0.3 + p / 10) for p in (1, 2) for v, m, g in (
        ("raw_d", None, None), ("aux", "regression", None), ("aux", "classification", None),
        ("aux_siamese", "regression", 1.0), ("aux_siamese", "regression", 2.0), ("future_variant", None, None))]
    return study(cells, [baseline(p, b, 0.2) for p in (1, 2) for b in ("linear", "svr2", "ridge", "best_simple",
                                                                       "future_baseline")])


@pytest.mark.slow
def test_the_study_figures_are_written(tmp_path, drawn):
    s = _study()
    for plot, name in ((figures.plot_by_variant, "by.png"), (figures.plot_aux_mode, "aux.png"), (figures.plot_margin, "m.png")):
        plot(s, tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == PNG
    # a variant this version does not know is left out, as in Table 3; a baseline shows under its name; the
    # single simple models are left to the best simple model
    assert drawn["by.png"] == [["Raw:d", "Aux", "Aux+Siamese", "linear regression", "SVR (two layers)",
                                "best simple model", "future_baseline"]]
    assert drawn["aux.png"][0][:2] == ["Aux\nregression", "Aux\nclassification"]
    assert drawn["m.png"] == [["1", "2"]]
    only_raw = study([cell(1, "raw_d", valid=0.5, test=0.4)], [])  # nothing for the aux and margin figures
    figures.plot_aux_mode(only_raw, tmp_path / "aux0.png")
    figures.plot_margin(only_raw, tmp_path / "m0.png")
    assert (tmp_path / "aux0.png").read_bytes()[:8] == PNG and (tmp_path / "m0.png").read_bytes()[:8] == PNG


@pytest.mark.slow
def test_the_first_figure_draws_means_and_sds_over_seeds_and_says_so(tmp_path, drawn):
    d = cell(1, "raw_d", valid=0.5, test=0.4)
    s = study([d], [baseline(1, "svr2", 0.3)], replicates=[replicate(d["grid_cell"], k, 0.4 + k / 10, d["run_id"])
                                                             for k in (1, 2)])
    figures.plot_by_variant(seeds.with_seeds(s), tmp_path / "by.png")
    ax = drawn["by.png axes"][0]
    assert "mean +- sd over 2 seeds" in ax.get_title()
    [bars] = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    (low, high), = [seg[:, 1] for seg in bars.lines[2][0].get_segments()]
    assert (low, high) == pytest.approx((0.55 - np.std([0.5, 0.6], ddof=1), 0.55 + np.std([0.5, 0.6], ddof=1)))
    figures.plot_by_variant(seeds.with_seeds(study([d])), tmp_path / "single.png")
    assert "single runs" in drawn["single.png axes"][0].get_title()


@pytest.mark.slow
def test_the_importance_heat_map(tmp_path, drawn):
    rows = pd.DataFrame([("p1-raw_d", "lr", 0.7, 12), ("p1-raw_d", "dropout", 0.3, 12), ("p1-aux", "lr", 1.0, 10)],
                        columns=["grid_cell", "param", "importance", "trials"])
    figures.plot_importance(rows, tmp_path / "imp.png")
    assert (tmp_path / "imp.png").read_bytes()[:8] == PNG
    assert drawn["imp.png"][0] == ["lr", "dropout"]  # the params that mattered most on the left
    [image] = drawn["imp.png images"]
    assert image.get_array().shape == (2, 2) and (image.norm.vmin, image.norm.vmax) == (0.0, 1.0)


@pytest.mark.slow
def test_the_attention_figures_are_written_with_uniform_white(tmp_path, drawn):
    rng = np.random.default_rng(0)
    n, marks = 4, ("H3K4me3", "H3K27me3")
    alpha = rng.dirichlet(np.ones(200), size=(n, 2))
    maps = AttentionMaps(tuple(f"g{i}" for i in range(n)), np.zeros(n), np.zeros(n), marks,
                         {"A": alpha, "B": alpha[::-1]}, {"A": [f"A:{m}" for m in marks], "B": [f"B:{m}" for m in marks]},
                         {"A": rng.dirichlet(np.ones(2), size=n), "B": rng.dirichlet(np.ones(2), size=n)},
                         {"A": [f"A:{m}" for m in marks], "B": [f"B:{m}" for m in marks]})
    info = {"cell_a": "E1", "cell_b": "E2", "grid_cell": "p1-aux", "variant": "Aux", "pair_label": "E1 vs E2"}
    figures.plot_bin_attention(maps.select([0, 1]), maps.select([2, 3]), tmp_path / "bins.png", info)
    figures.plot_mark_attention(maps.select([0, 1]), maps.select([2, 3]), tmp_path / "marks.png", info)
    assert (tmp_path / "bins.png").read_bytes()[:8] == PNG and (tmp_path / "marks.png").read_bytes()[:8] == PNG
    # uniform (1 x uniform) is the white middle of a diverging map reaching at least 0 and 2 x uniform
    for image in drawn["bins.png images"]:
        assert image.norm(1.0) == pytest.approx(0.5) and image.norm.vmin == 0.0 and image.norm.vmax >= 2.0
        assert np.allclose(image.cmap(0.5)[:3], 1.0, atol=0.04)
    flat = AttentionMaps(("g0", "g1"), np.zeros(2), np.zeros(2), marks, {"A": np.full((2, 2, 200), 1 / 200)},
                         {"A": [f"A:{m}" for m in marks]}, {"A": np.full((2, 2), 0.5)}, {"A": [f"A:{m}" for m in marks]})
    figures.plot_bin_attention(flat, flat, tmp_path / "flat.png", info)
    assert all(image.norm.vmax == 2.0 for image in drawn["flat.png images"])
    figures.plot_mark_attention(flat, flat, tmp_path / "flatm.png", info)
    assert drawn["flatm.png axes"][0].get_xlim()[1] >= 1.0  # twice uniform (0.5) at least: flat bars look flat
