"""The study report: tables, figures and one HTML page from a study's MLflow experiment alone.

    python ablations/report.py --experiment deepdiff-ablation --out report/     (or: deepdiff-report ...)

writes into --out (and logs as the artifacts of a new run tagged ``kind=report`` in the experiment,
unless --no-log):

- ``table3.csv`` / ``table3.md``: the paper's Table 3 for every variant: test PCC of the variant's best
  grid cell per pair (by valid PCC) relative to the pair's two-layer SVR, in percent
  (100 * (pcc - pcc_svr2) / |pcc_svr2|), per pair, mean and median;
- ``test_pcc_by_variant.png`` (the paper's Figure 2 style), ``aux_mode.png``, ``margin.png``;
- ``axes.csv``: which axis of the grid matters: the mean paired difference in best test PCC for
  variant (vs raw_d), aux mode (classification - regression) and margin (vs 2, the published one, or
  the smallest), with a seeded percentile-bootstrap 95% interval and a Wilcoxon p-value when n >= 5;
- ``importance.csv``: Optuna's hyperparameter importances per grid cell, from its scored trial runs over
  the search space its grid-cell run recorded (none, with a note, for a study that recorded none);
- ``cost.csv``: trials, pruned, failed, trial-seconds, best test PCC and PCC per trial-hour per grid cell;
- ``attention_bins.png``, ``attention_marks.png``, ``attention_marks.csv``: the attention of the best
  stored model (the grid-cell artifact ``model/best.pt``) of one pair (``--attention-pair N``, default
  the first pair with one), averaged over its most up- and most down-regulated test genes; without a
  model or the data the page says so;
- ``replicates.csv``, ``replicate_tests.csv``: when the experiment holds replicate runs (trained by
  ``deepdiff-ablation --replicates K --experiment E``): per grid cell the mean and sd of test PCC over
  seeds; per variant a paired Wilcoxon test against raw_d and against the two-layer SVR;
- ``index.html``: one page for a reader without code, every figure and table inline.

The report only reads: it never trains and imports no Ray. Its modules, one job each:
`load` (everything read from MLflow, the only one that talks to it), `stats` (Table 3, axes, cost,
replicates: pure DataFrame functions), `importance` (Optuna at call time), `attention` (torch at call
time), `figures` (matplotlib), `page` (index.html from ``templates/index.html.j2``, Jinja2 with
autoescape), `names` (how things are called on the page), `write` (`write_report`), `cli` (`main`).
"""

from deepdiff_study.report.attention import ATTENTION_FILES, ATTENTION_GENES
from deepdiff_study.report.cli import main
from deepdiff_study.report.write import REPLICATE_FILES, REPORT_FILES, write_report

__all__ = ["ATTENTION_FILES", "ATTENTION_GENES", "REPLICATE_FILES", "REPORT_FILES", "main", "write_report"]
