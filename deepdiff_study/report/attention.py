"""What the model looks at: the attention of one pair's best stored model, as two figures, a table and
a sentence each.

The model is the grid-cell artifact ``model/best.pt`` (`records.MODEL_ARTIFACT`) of the chosen pair
(``--attention-pair N``, default the first pair with one) with the best valid PCC, averaged over its
`ATTENTION_GENES` most up- and most down-regulated test genes: bin attention as heat maps (marks x bins,
in kb from the TSS) and mark attention as bars. The pair's data is found from the grid cell's ``data``
tag (a synthetic pair is regenerated from its recorded settings if its folder is gone). Without a model
or the data the section is one sentence saying why, never an error. torch is imported at call time only.
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
    top = {g: max(((c, float(v)) for c, v in zip(m.mark_channels[main], m.mark_attention[main].mean(axis=0))),
                  key=lambda cv: cv[1]) for g, m in (("up", up), ("down", down))}
    model = (f"the best stored model of pair {int(cell.pair)} (grid cell {cell.grid_cell}, "
             f"{info['variant']}, its best trial's model at epoch {info['epoch']}, "
             f"test PCC {float(cell.best_test_pcc):.3f}; {info['pair_label']})")
    genes = (f"the {k} most up-regulated and the {k} most down-regulated of its {info['test_genes']} test genes "
             f"(true log2 fold change of {info['cell_b']} vs {info['cell_a']})")
    return AttentionPart(files=list(ATTENTION_FILES), sentences={
        "attention_bins.png": (f"Where along the promoter region {model} looks, averaged over {genes}: one heat map per "
                               "encoder, one row per histone mark, the 200 bins from -10 to +10 kb around the TSS; 1 is "
                               "uniform attention, brighter bins weigh more in the prediction."),
        "attention_marks.png": (f"How much the same model weighs each mark (mark attention, mean over the same genes; "
                                f"{PATH_TITLES[main].format(**info)}): for up-regulated genes {top['up'][0]} most "
                                f"({top['up'][1]:.3f}), for down-regulated genes {top['down'][0]} ({top['down'][1]:.3f}); "
                                f"uniform would be {1 / len(up.mark_channels[main]):.3f}. Values in attention_marks.csv."),
    })


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
