"""The report's figures from hand-made frames and attention maps: each is a PNG, also for a baseline this
version has no label for, and for a study without siamese or aux grid cells (matplotlib: seconds each)."""

import numpy as np
import pytest

from report_frames import baseline, cell, study
from deepdiff.attention import AttentionMaps
from deepdiff_study.report import figures

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def drawn(monkeypatch):
    """The tick labels of every axes saved, by file name."""
    seen = {}
    save = figures._pyplot().Figure.savefig

    def savefig(fig, path, **kwargs):
        seen[path.name] = [[t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes]
        return save(fig, path, **kwargs)

    monkeypatch.setattr(figures._pyplot().Figure, "savefig", savefig)
    return seen


def _study():
    cells = [cell(p, v, m, g, valid=0.5, test=0.3 + p / 10) for p in (1, 2) for v, m, g in (
        ("raw_d", None, None), ("aux", "regression", None), ("aux", "classification", None),
        ("aux_siamese", "regression", 1.0), ("aux_siamese", "regression", 2.0), ("future_variant", None, None))]
    return study(cells, [baseline(p, b, 0.2) for p in (1, 2) for b in ("linear", "svr2", "future_baseline")])


@pytest.mark.slow
def test_the_study_figures_are_written(tmp_path, drawn):
    s = _study()
    for plot, name in ((figures.plot_by_variant, "by.png"), (figures.plot_aux_mode, "aux.png"), (figures.plot_margin, "m.png")):
        plot(s, tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == PNG
    # a variant this version does not know is left out, as in Table 3; a baseline shows under its name
    assert drawn["by.png"] == [["Raw:d", "Aux", "Aux+Siamese", "linear regression", "SVR (two layers)", "future_baseline"]]
    assert drawn["aux.png"][0][:2] == ["Aux\nregression", "Aux\nclassification"]
    assert drawn["m.png"] == [["1", "2"]]
    only_raw = study([cell(1, "raw_d", valid=0.5, test=0.4)], [])  # nothing for the aux and margin figures
    figures.plot_aux_mode(only_raw, tmp_path / "aux0.png")
    figures.plot_margin(only_raw, tmp_path / "m0.png")
    assert (tmp_path / "aux0.png").read_bytes()[:8] == PNG and (tmp_path / "m0.png").read_bytes()[:8] == PNG


@pytest.mark.slow
def test_the_attention_figures_are_written(tmp_path):
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
