"""What the model looks at: the attention of one pair's best stored model, as two figures, a table and
a sentence each.

The model is the grid-cell artifact ``model/best.pt`` (`records.MODEL_ARTIFACT`) of the chosen pair
(``--attention-pair N``, default the first pair with one) with the best valid PCC, averaged over its
`ATTENTION_GENES` most up- and most down-regulated test genes: bin attention as heat maps (marks x bins,
in kb from the TSS) and mark attention as bars. The pair's data is found from the grid cell's ``data``
tag (a synthetic pair is regenerated from its recorded settings if its folder is gone). Without a model
or the data the section is one sentence saying why, never an error. torch is imported at call time only.

The words follow the data (`mark_words`, `bin_words`, pure functions of the arrays): attention is "close
to uniform" unless a mark's (a bin's) mean weight departs from uniform (1/M over the M channels of an
encoder; 1/T over the T bins) by more than its spread (sd) across the genes averaged; only marks and bins
that depart are named, with their sd. The figures' colour scales are anchored on uniform (see
`deepdiff_study.report.figures`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from deepdiff.errors import ConfigError, DeepDiffError
from deepdiff_study.report.figures import PATH_TITLES, plot_bin_attention, plot_mark_attention
from deepdiff_study.report.load import download_model
from deepdiff_study.report.names import text, variant_label

if TYPE_CHECKING:
    from deepdiff_study.report.load import Study

ATTENTION_FILES = ("attention_bins.png", "attention_marks.png", "attention_marks.csv")  # when a model and data are there
ATTENTION_GENES = 20  # most up- and most down-regulated test genes averaged (fewer: half the test genes each)
ROUNDING = 1e-6  # a departure from uniform below this share of uniform is float rounding, never "departs"


@dataclass
class AttentionPart:
    """What the attention section of the page shows: the files written and a sentence each, or why not."""

    files: list[str] = field(default_factory=list)
    sentences: dict[str, str] = field(default_factory=dict)  # figure file -> its sentence
    note: str | None = None  # one sentence when there are no maps


def attention_cell(study: Study, pair: int | None) -> tuple[Any, str | None]:
    """(the grid cell whose model is drawn, None) or (None, why there is none): the stored model of the
    chosen pair (default: the first pair with one) with the best valid PCC."""
    cells = study.cells
    stored = cells[cells["model"].notna() & np.isfinite(cells["best_valid_pcc"].astype(float))]
    if pair is None and not stored.empty:
        pair = int(stored["pair"].min())
    mine = stored[stored["pair"] == pair] if pair is not None else stored
    if mine.empty:
        where = cells if pair is None else cells[cells["pair"] == pair]
        reasons = sorted({r for r in where["model_missing"].dropna()})
        why = (f"their runs say: {reasons[0]}" if reasons else
               "their runs have no model artifact (a study from before models were kept)")
        return None, (f"No attention maps: no grid cell {'of pair ' + str(pair) + ' ' if pair is not None else ''}"
                      f"has a stored model ({why}).")
    return mine.loc[mine["best_valid_pcc"].astype(float).idxmax()], None


def attention_section(study: Study, out: Path, pair: int | None) -> AttentionPart:
    """Draw the attention of the chosen model into `out` (see the module docstring); never raises for a
    missing model or missing data: the returned note says so."""
    cell, why = attention_cell(study, pair)
    if cell is None:
        return AttentionPart(note=why)
    try:
        up, down, info = _attention_maps(study, cell)
    except (DeepDiffError, OSError, MlflowException) as err:
        return AttentionPart(note=f"No attention maps for grid cell {cell.grid_cell}: {str(err).splitlines()[0]}")
    k = len(up.gene_ids)
    plot_bin_attention(up, down, out / "attention_bins.png", info)
    plot_mark_attention(up, down, out / "attention_marks.png", info)
    marks = [{"path": path, "channel": channel, "genes": group, "n_genes": k, "mean_beta": float(value)}
             for group, maps in (("up", up), ("down", down)) for path, beta in maps.mark_attention.items()
             for channel, value in zip(maps.mark_channels[path], beta.mean(axis=0))]
    pd.DataFrame(marks).to_csv(out / "attention_marks.csv", index=False)
    main = next(iter(up.mark_attention))
    model = (f"the best stored model of pair {int(cell.pair)} (grid cell {cell.grid_cell}, "
             f"{info['variant']}, its best trial's model at epoch {info['epoch']}, "
             f"test PCC {float(getattr(cell, 'search_test_pcc', cell.best_test_pcc)):.3f}; {info['pair_label']})")
    genes = (f"the {k} most up-regulated and the {k} most down-regulated of its {info['test_genes']} test genes "
             f"(true log2 fold change of {info['cell_b']} vs {info['cell_a']})")
    bins = bin_words({path: {"up": up.bin_attention[path], "down": down.bin_attention[path]} for path in up.bin_attention},
                     {path: up.bin_channels[path] for path in up.bin_attention}, up.n_bins)
    marks = mark_words({"up": up.mark_attention[main], "down": down.mark_attention[main]}, up.mark_channels[main])
    return AttentionPart(files=list(ATTENTION_FILES), sentences={
        "attention_bins.png": (f"Where along the promoter region {model} looks, averaged over {genes}: one heat map per "
                               "encoder, one row per histone mark, the 200 bins from -10 to +10 kb around the TSS; "
                               f"white is uniform attention (1 x uniform), red more, blue less. {bins}"),
        "attention_marks.png": (f"How much the same model weighs each mark (mark attention, mean over the same genes, "
                                f"bars: sd across genes; {PATH_TITLES[main].format(**info)}): {marks} Values in "
                                "attention_marks.csv."),
    })


def _spread(values: np.ndarray) -> np.ndarray:
    """The sd across genes (axis 0; ddof 1, or 0 for one gene)."""
    return values.std(axis=0, ddof=1 if len(values) > 1 else 0)


def mark_words(groups: dict[str, np.ndarray], channels: Any) -> str:
    """A sentence on one encoder's mark attention: `groups` maps "up" / "down" to (genes, M) weights (each
    row sums to 1). Close to uniform (1/M) unless a mark's mean over genes departs from it by more than its
    sd across genes; then those marks, with mean and sd."""
    channels = [str(c) for c in channels]
    uniform = 1.0 / len(channels)
    means = {g: beta.mean(axis=0) for g, beta in groups.items()}
    sds = {g: _spread(beta) for g, beta in groups.items()}
    departs = [(g, c, float(m), float(s)) for g in groups for c, m, s in zip(channels, means[g], sds[g])
               if abs(m - uniform) > max(s, ROUNDING * uniform)]
    if not departs:
        low = min(float(m.min()) for m in means.values())
        high = max(float(m.max()) for m in means.values())
        return (f"close to uniform: every mark gets between {low:.3f} and {high:.3f} (uniform {uniform:.3f}), "
                f"within its spread across genes (sd up to {max(float(s.max()) for s in sds.values()):.3f}).")
    said = []
    for group in groups:
        mine = sorted((d for d in departs if d[0] == group), key=lambda d: -d[2])
        if mine:
            said.append(f"for {group}-regulated genes " + ", ".join(
                f"{c} {m:.3f} ({'above' if m > uniform else 'below'} uniform; sd {s:.3f})" for _, c, m, s in mine))
    return (f"departs from uniform ({uniform:.3f}) by more than its spread across genes: " + "; ".join(said) +
            "; every other mark is within its spread.")


def bin_words(groups: dict[str, dict[str, np.ndarray]], channels: dict[str, Any], n_bins: int) -> str:
    """A sentence on bin attention: `groups` maps each Level I path to "up" / "down" -> (genes, channels, T)
    weights (each channel's T bins sum to 1). Close to uniform (1/T) unless a bin's mean over genes departs
    from it by more than its sd across genes; then how many bins do, and the largest departure."""
    from deepdiff.attention import bin_centers_kb

    centers = bin_centers_kb(n_bins)
    departing, total, extreme, ratios = 0, 0, None, []
    for path, by_group in groups.items():
        for group, alpha in by_group.items():
            scaled = alpha * n_bins  # 1 = uniform
            mean, sd = scaled.mean(axis=0), _spread(scaled)
            ratios += [float(mean.min()), float(mean.max())]
            mask = np.abs(mean - 1.0) > np.maximum(sd, ROUNDING)
            departing += int(mask.sum())
            total += mask.size
            if mask.any():
                excess = np.where(mask, np.abs(mean - 1.0) - np.maximum(sd, ROUNDING), -np.inf)
                ch, b = np.unravel_index(int(np.argmax(excess)), excess.shape)
                if extreme is None or excess[ch, b] > extreme[0]:
                    extreme = (float(excess[ch, b]), path, group, str(channels[path][ch]), float(centers[b]),
                               float(mean[ch, b]), float(sd[ch, b]))
    if extreme is None:
        return (f"The attention is close to uniform: no bin's mean weight departs from uniform by more than its "
                f"spread across genes (means from {min(ratios):.2f} to {max(ratios):.2f} x uniform).")
    _, path, group, channel, kb, mean, sd = extreme
    return (f"{departing} of {total} bin means depart from uniform by more than their spread across genes; the "
            f"clearest: {channel} at {kb:+.1f} kb in {PATH_TITLES[path].split(' (')[0]} for {group}-regulated genes "
            f"({mean:.2f} x uniform, sd across genes {sd:.2f}).")


def _attention_maps(study: Study, cell: Any):
    """(maps of the up-regulated genes, of the down-regulated ones, facts for titles) for a grid cell's model."""
    from deepdiff.attention import attention_maps
    from deepdiff.data import default_cache_dir
    from deepdiff.train import check_shapes, load_checkpoint, load_model
    from deepdiff_study.grid import Pair
    from deepdiff_study.pairs import load_sources, recorded_source

    if not isinstance(cell.data, dict):
        raise ConfigError("its grid-cell run has no data tag naming the pair's files")
    with tempfile.TemporaryDirectory(prefix="deepdiff-report-model-") as tmp:
        local = download_model(study, cell.cell_run_id, tmp)
        model, model_cfg, train_cfg = load_model(local)
        epoch = load_checkpoint(local)["epoch"]
    pair = Pair(int(cell.pair), cell.epigenome_a, cell.epigenome_b, text(cell.imitates))
    source = recorded_source(pair, cell.data, regenerate_root=default_cache_dir() / "synthetic")
    data = load_sources([source], cache_dir=default_cache_dir())[pair.number]
    check_shapes(model_cfg, data)
    test = data.test
    k = min(ATTENTION_GENES, len(test) // 2)
    order = np.argsort(test.diff.cpu().numpy(), kind="stable")
    chosen = np.concatenate([order[::-1][:k], order[:k]])
    maps = attention_maps(model, test.subset(chosen), train_cfg.input_transform, batch_size=train_cfg.eval_batch_size)
    label = study.pairs.set_index("pair").loc[int(cell.pair), "label"]
    info = {"epoch": epoch, "test_genes": len(test), "cell_a": pair.epigenome_a, "cell_b": pair.epigenome_b,
            "pair_label": label, "grid_cell": cell.grid_cell, "variant": variant_label(cell.variant)}
    return maps.select(range(k)), maps.select(range(k, 2 * k)), info
