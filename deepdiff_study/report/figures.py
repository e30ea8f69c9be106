"""The report's figures (matplotlib, Agg backend, imported at call time), each written to one PNG:

- `plot_by_variant` (``test_pcc_by_variant.png``, the paper's Figure 2 style): test PCC of each variant's
  best grid cell per pair (with seeds: the mean, an error bar of +-1 sd over seeds), their mean, the
  paper's baselines and the best simple model as extra columns;
- `plot_aux_mode` (``aux_mode.png``): regression vs classification aux heads, matched grid cells joined;
- `plot_margin` (``margin.png``): best test PCC against the contrastive margin;
- `plot_bin_attention` / `plot_mark_attention` (``attention_bins.png`` / ``attention_marks.png``): the
  attention maps `deepdiff_study.report.attention` computed, their scales anchored on uniform attention
  (a diverging map white at 1 x uniform spanning at least 0..2 x uniform; bars from 0 to at least twice
  uniform, with the sd across genes), so that flat attention looks flat;
- `plot_importance` (``importance.png``): fANOVA importances as a heat map, grid cells x params.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepdiff_study.records import NOT_APPLICABLE
from deepdiff_study.report.names import MODEL_LABELS, baseline_label, variant_label
from deepdiff_study.report.stats import has_seeds, variant_best, variants_in

if TYPE_CHECKING:
    from deepdiff_study.report.load import Study

# The encoders of a variant, as the attention figures title them.
PATH_TITLES = {"diff": "difference encoder f^d", "A": "cell-type A encoder f^A ({cell_a})",
               "B": "cell-type B encoder f^B ({cell_b})"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _pair_colors(study: Study) -> dict[int, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {int(p): cmap(i % 10) for i, p in enumerate(study.pairs["pair"])}


def plot_by_variant(study: Study, path: Path) -> None:
    """Test PCC of each variant's best grid cell per pair (points; with seeds the mean over them and +-1 sd)
    and their mean over pairs (bar), the paper's baselines and the best simple model as extra columns."""
    plt = _pyplot()
    best = variant_best(study.cells)
    seeded = has_seeds(best)
    variants = variants_in(best["variant"])
    sd = "test_sd" if "test_sd" in best.columns else None

    def points(frame, pcc: str, spread: str | None):
        return [(int(r["pair"]), float(r[pcc]), float(r[spread]) if spread else math.nan) for _, r in frame.iterrows()]

    columns = [(variant_label(v), points(best[best["variant"] == v], "best_test_pcc", sd)) for v in variants]
    # every baseline but the single simple models, which the best simple model stands for (`load`'s order)
    columns += [(baseline_label(b), points(study.baselines[study.baselines["baseline"] == b], "test_pcc", None))
                for b in study.baselines["baseline"].unique() if b not in MODEL_LABELS]
    colors = _pair_colors(study)
    fig, ax = plt.subplots(figsize=(max(6.5, 0.9 * len(columns) + 2), 5.0))
    labelled = set()
    for x, (_, pts) in enumerate(columns):
        for k, (pair, pcc, spread) in enumerate(pts):
            jitter = (k - (len(pts) - 1) / 2) * 0.06
            label = None if pair in labelled else f"pair {pair}"
            labelled.add(pair)
            color = colors.get(pair, "grey")
            if math.isfinite(spread):
                ax.errorbar(x + jitter, pcc, yerr=spread, color=color, capsize=3, linewidth=1, zorder=3)
            ax.scatter(x + jitter, pcc, color=color, s=28, zorder=3, label=label)
        finite = [p for _, p, _ in pts if math.isfinite(p)]
        if finite:
            ax.hlines(np.mean(finite), x - 0.3, x + 0.3, color="black", linewidth=2, zorder=4,
                      label="mean over pairs" if x == 0 else None)
    if len(variants) < len(columns):
        ax.axvline(len(variants) - 0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(range(len(columns)), [c for c, _ in columns], rotation=35, ha="right")
    ax.set_ylabel("test PCC (Pearson r, unitless)")
    ax.set_xlabel("DeepDiff variant (best grid cell per pair by valid PCC)  |  baselines")
    runs = (f"mean +- sd over {int(best['seeds'].max())} seeds" if seeded else
            "single runs: one training run per setting, no seeds")
    ax.set_title(f"Test PCC of predicted vs true log2 fold change, per variant and pair\n({runs})")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_aux_mode(study: Study, path: Path) -> None:
    """Per aux variant: best test PCC with regression vs classification aux heads, matched cells joined."""
    plt = _pyplot()
    cells = study.cells[study.cells["aux_mode"].notna()].copy()
    cells["margin_key"] = cells["margin"].fillna(-1.0)
    variants = variants_in(cells["variant"])
    colors = _pair_colors(study)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(variants) + 2), 4.5))
    ticks, labels = [], []
    for i, variant in enumerate(variants):
        mine = cells[cells["variant"] == variant]
        x_reg, x_cls = 3 * i, 3 * i + 1
        ticks += [x_reg, x_cls]
        labels += [f"{variant_label(variant)}\nregression", f"{variant_label(variant)}\nclassification"]
        for (pair, margin), group in mine.groupby(["pair", "margin_key"]):
            reg = group[group["aux_mode"] == "regression"]["best_test_pcc"]
            cls = group[group["aux_mode"] == "classification"]["best_test_pcc"]
            color = colors.get(int(pair), "grey")
            if len(reg) and len(cls):
                ax.plot([x_reg, x_cls], [reg.iloc[0], cls.iloc[0]], color=color, alpha=0.6, linewidth=1)
            ax.scatter([x_reg] * len(reg), reg, color=color, s=24, zorder=3)
            ax.scatter([x_cls] * len(cls), cls, color=color, s=24, zorder=3)
        for x, mode in ((x_reg, "regression"), (x_cls, "classification")):
            values = mine[mine["aux_mode"] == mode]["best_test_pcc"].astype(float)
            values = values[np.isfinite(values)]
            if len(values):
                ax.hlines(values.mean(), x - 0.3, x + 0.3, color="black", linewidth=2, zorder=4)
    ax.set_xticks(ticks, labels, rotation=30, ha="right", fontsize=8)
    ax.set_xlabel("variant and mode of the cell-specific auxiliary task")
    ax.set_ylabel("best test PCC of the grid cell (Pearson r)")
    for pair, color in colors.items():
        ax.scatter([], [], color=color, s=24, label=f"pair {pair}")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Cell-specific auxiliary task: regression vs classification\n(lines join the same pair and margin; bars: means)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_margin(study: Study, path: Path) -> None:
    """Best test PCC against the contrastive margin m, one thin line per (pair, aux mode), mean per variant."""
    plt = _pyplot()
    cells = study.cells[study.cells["margin"].notna()].copy()
    variants = variants_in(cells["variant"])
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, variant in enumerate(variants):
        mine = cells[cells["variant"] == variant]
        color = cmap(i % 10)
        modes = mine["aux_mode"].fillna(NOT_APPLICABLE)
        for (_, mode), group in mine.groupby(["pair", modes]):
            group = group.sort_values("margin")
            ax.plot(group["margin"], group["best_test_pcc"], color=color, alpha=0.35, linewidth=1, marker="o", markersize=3,
                    linestyle="--" if mode == "classification" else "-")
        for mode, group in mine.groupby(modes):
            means = group.groupby("margin")["best_test_pcc"].mean()
            ax.plot(means.index, means.to_numpy(), color=color, linewidth=2.5, marker="s",
                    linestyle="--" if mode == "classification" else "-",
                    label=f"{variant_label(variant)}, aux {mode} (mean)")
    margins = sorted(set(cells["margin"]))
    if margins:
        ax.set_xticks(margins, [f"{m:g}" for m in margins])
    ax.set_xlabel("contrastive margin m (embedding distance units)")
    ax.set_ylabel("best test PCC of the grid cell (Pearson r)")
    ax.set_title("Siamese variants: test PCC vs margin\n(thin lines: one pair each; thick: mean over pairs)")
    if variants:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_bin_attention(up, down, path: Path, info: dict) -> None:
    """Heat maps of mean bin attention (x T: 1 = uniform), one row per Level I path, columns up / down genes."""
    from deepdiff.attention import bin_centers_kb

    plt = _pyplot()
    paths = list(up.bin_attention)
    n_bins = up.n_bins
    means = {(p, g): m.bin_attention[p].mean(axis=0) * n_bins for p in paths for g, m in (("up", up), ("down", down))}
    # white = uniform (1); the scale spans at least 0..2 x uniform, so a few percent off uniform stays near white
    from matplotlib.colors import TwoSlopeNorm

    norm = TwoSlopeNorm(vcenter=1.0, vmin=0.0, vmax=max(2.0, max(float(v.max()) for v in means.values())))
    heights = [max(1.6, 0.28 * up.bin_attention[p].shape[1] + 0.6) for p in paths]
    fig, axes = plt.subplots(len(paths), 2, figsize=(11.5, sum(heights) + 1.3), squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": heights})
    centers = bin_centers_kb(n_bins)
    half = (centers[1] - centers[0]) / 2
    image = None
    for row, p in enumerate(paths):
        channels = up.bin_channels[p]
        for col, (group, maps) in enumerate((("up", up), ("down", down))):
            ax = axes[row][col]
            image = ax.imshow(means[(p, group)], aspect="auto", cmap="RdBu_r", norm=norm, interpolation="nearest",
                              extent=(centers[0] - half, centers[-1] + half, len(channels) - 0.5, -0.5))
            ax.set_yticks(range(len(channels)), channels if col == 0 else [""] * len(channels), fontsize=8)
            ax.set_xticks([-8, -4, 0, 4, 8])  # not the edges: neighbouring panels' end labels would touch
            ax.axvline(0, color="grey", linewidth=0.6, linestyle=":")
            if row == len(paths) - 1:
                ax.set_xlabel("position relative to the TSS (kb)")
            else:
                ax.set_xticklabels([])
            what = f"{len(maps.gene_ids)} most {'up' if group == 'up' else 'down'}-regulated test genes"
            ax.set_title(f"{PATH_TITLES[p].format(**info)}\n{what}" if row == 0 else PATH_TITLES[p].format(**info), fontsize=9)
    fig.suptitle(f"Bin attention of {info['grid_cell']} ({info['variant']})\npair {info['pair_label']}", fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.9, aspect=30).set_label(f"mean bin attention x {n_bins} (1 = uniform, white)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_mark_attention(up, down, path: Path, info: dict) -> None:
    """Mean mark attention per channel of every Level II path (one panel each, stacked, bars of one
    thickness): up- vs down-regulated genes as paired bars."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    paths = list(up.mark_attention)
    sizes = [len(up.mark_channels[p]) for p in paths]
    fig, axes = plt.subplots(len(paths), 1, figsize=(7.5, 0.3 * sum(sizes) + 1.0 * len(paths) + 1.2), squeeze=False,
                             layout="constrained", gridspec_kw={"height_ratios": [n + 2 for n in sizes]})
    for ax, p in zip(axes[:, 0], paths):
        channels = up.mark_channels[p]
        y = np.arange(len(channels))
        top = 2.0 / len(channels)  # the axis reaches at least twice uniform: small departures look small
        for offset, maps, color, which in ((-0.2, up, "tab:red", "up"), (0.2, down, "tab:blue", "down")):
            beta = maps.mark_attention[p]
            sd = beta.std(axis=0, ddof=1) if len(beta) > 1 else np.zeros(beta.shape[1])
            ax.barh(y + offset, beta.mean(axis=0), height=0.4, color=color, xerr=sd, capsize=2,
                    error_kw={"linewidth": 0.8}, label=f"{len(maps.gene_ids)} most {which}-regulated test genes")
            top = max(top, float((beta.mean(axis=0) + sd).max()))
        ax.axvline(1 / len(channels), color="black", linestyle=":", linewidth=1, label="uniform attention")
        ax.set_xlim(0, top * 1.05)
        ax.set_yticks(y, channels, fontsize=8)
        ax.set_ylim(len(channels) - 0.5, -0.5)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_xlabel("mean mark attention (sums to 1 over the channels of this encoder); bars: sd across genes",
                      fontsize=9)
        ax.set_title(PATH_TITLES[p].format(**info), fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=3, frameon=False)  # never over a bar
    fig.suptitle(f"Mark attention of {info['grid_cell']} ({info['variant']})\npair {info['pair_label']}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_importance(importance, path: Path) -> None:
    """fANOVA importances (`deepdiff_study.report.importance`) as a heat map: a row per grid cell, a column per
    searched param (blank where it was not searched or did not vary), 0..1 on one colour scale."""
    plt = _pyplot()
    table = importance.pivot_table(index="grid_cell", columns="param", values="importance", aggfunc="first")
    table = table[table.max().sort_values(ascending=False).index]  # the params that mattered most on the left
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * table.shape[1] + 3.5), max(2.5, 0.32 * table.shape[0] + 1.8)),
                           layout="constrained")
    image = ax.imshow(table.to_numpy(dtype=float), aspect="auto", cmap="Greens", vmin=0.0, vmax=1.0,
                      interpolation="nearest")
    ax.set_xticks(range(table.shape[1]), list(table.columns), rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(table.shape[0]), list(table.index), fontsize=8)
    counts = importance.groupby("grid_cell")["trials"].first()
    ax.set_title(f"Share of the variation in valid PCC each searched setting explains (fANOVA; "
                 f"{int(counts.min())}-{int(counts.max())} scored trials per grid cell)", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.9).set_label("importance (sums to 1 per grid cell)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
