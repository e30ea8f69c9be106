"""The study report: tables, figures and one HTML page from a study's MLflow experiment alone.

    python ablations/report.py --experiment deepdiff-ablation --out report/     (or: deepdiff-report ...)

Every test PCC is the mean over seeds (with its sd) where the experiment holds replicate runs (trained by
``deepdiff-ablation --replicates K --experiment E``); without them the page says at the top that these
are single runs and how to get seeds. A variant's grid cell is always chosen by its search's valid PCC.
The report writes into --out (and logs as the artifacts of a new run tagged ``kind=report`` in the
experiment, unless --no-log):

- ``against_baselines.csv``: the first table: per pair and variant (its best grid cell by valid PCC) the
  test PCC against the pair's two-layer SVR and its best simple model, and on which side of each the
  variant lies (with seeds: "above"/"below" only when every seed is);
- ``table3.csv`` / ``table3.md``: the paper's Table 3 for every variant: test PCC of the variant's best
  grid cell per pair relative to the pair's two-layer SVR, in percent (100 * (pcc - pcc_svr2) /
  |pcc_svr2|), per pair (with seeds: and its sd), mean and median;
- ``test_pcc_by_variant.png`` (the paper's Figure 2 style, error bars over seeds), ``aux_mode.png``,
  ``margin.png``;
- ``axes.csv``: which axis of the grid matters: the mean paired difference in test PCC for variant
  (vs raw_d), aux mode (classification - regression) and margin (vs 2, the published one, or the
  smallest), with a seeded percentile-bootstrap 95% interval and a Wilcoxon p-value when n >= 5; the
  page says one sentence per axis;
- ``importance.csv`` (and ``importance.png``, a heat map, when there are any): Optuna's hyperparameter
  importances per grid cell with at least `importance.MIN_TRIALS` scored trials, over the search space
  its grid-cell run recorded; otherwise one sentence says why they are omitted;
- ``cost.csv``: per grid cell trials, pruned, failed, warm starts, trial-hours, best valid and test PCC,
  and the trials and trial-hours its search took to reach its best valid PCC; the study's trial-hours;
- ``attention_bins.png``, ``attention_marks.png``, ``attention_marks.csv``: the attention of the best
  stored model (the grid-cell artifact ``model/best.pt``) of one pair (``--attention-pair N``, default
  the first pair with one), averaged over its most up- and most down-regulated test genes, described as
  close to uniform unless it departs from uniform by more than its spread across genes; without a model
  or the data the page says so;
- ``replicates.csv``, ``replicate_tests.csv``: when the experiment holds replicate runs: per grid cell
  the mean and sd of test PCC over seeds; per variant a paired Wilcoxon test against raw_d and against
  the two-layer SVR (one sentence on the page says what their n allows);
- ``index.html``: one page for a reader without code, every figure and table inline.

The report only reads: it never trains and imports no Ray. Its modules, one job each:
`load` (everything read from MLflow, the only one that talks to it), `stats` (Table 3, against the
baselines, axes, cost: pure DataFrame functions), `seeds` (the replicates: means over seeds, tests),
`words` (the sentences the numbers allow), `importance` (Optuna at call time), `attention` (torch at
call time), `figures` (matplotlib), `page` (index.html from ``templates/index.html.j2``, Jinja2 with
autoescape), `names` (how things are called on the page), `write` (`write_report`), `cli` (`main`).
"""

from deepdiff_study.report.attention import ATTENTION_FILES, ATTENTION_GENES
from deepdiff_study.report.cli import main
from deepdiff_study.report.write import IMPORTANCE_FIGURE, REPLICATE_FILES, REPORT_FILES, write_report

__all__ = ["ATTENTION_FILES", "ATTENTION_GENES", "IMPORTANCE_FIGURE", "REPLICATE_FILES", "REPORT_FILES", "main",
           "write_report"]
