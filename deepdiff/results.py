"""What training reports each epoch: `EpochResult` and its `EpochStatus`. Imports neither torch nor Ray.

The field names of `EpochResult` are the metric names everywhere (``metrics.csv``, Tune results, MLflow
metrics), so readers of results (the study's MLflow records, reports) import this module, not the
trainer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum


class EpochStatus(StrEnum):
    """Where a run stands after an epoch, as `fit` reports it."""

    RUNNING = "running"  # more epochs follow
    COMPLETED = "completed"  # the last epoch of a run that reached `epochs`
    EARLY_STOPPED = "early_stopped"  # `patience` epochs without a better valid PCC
    NAN = "nan"  # the training loss became NaN/inf; the run ended here
    DIVERGED = "diverged"  # the training loss is finite but valid/test predictions or metrics are not; ended here

    @property
    def diverged(self) -> bool:
        """The run ended because training diverged (NAN or DIVERGED): its metrics are no result."""
        return self in (EpochStatus.NAN, EpochStatus.DIVERGED)

    @property
    def final(self) -> bool:
        """The run ended by itself at this epoch (nothing outside stopped it)."""
        return self is not EpochStatus.RUNNING


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based epoch just finished
    train_loss: float  # mean total training loss over the epoch's batches
    train_diff_loss: float  # mean differential MSE part of it
    train_aux_loss: float  # mean auxiliary part (0 without aux)
    train_siamese_loss: float  # mean contrastive part (0 without siamese)
    valid_pcc: float  # PCC of predicted vs true differential expression on valid
    valid_mse: float
    test_pcc: float
    test_mse: float
    best_epoch: int  # epoch with the best valid PCC so far
    best_valid_pcc: float
    best_test_pcc: float  # test PCC at best_epoch: the number the paper reports
    best_test_mse: float
    seconds: float  # wall time of this epoch (train + evaluation)
    status: EpochStatus

    def metrics(self) -> dict[str, float]:
        """The numeric fields under their stable names (MLflow / Tune / metrics files)."""
        return {name: getattr(self, name) for name in METRIC_NAMES}


# The numeric fields of `EpochResult`: the metric names of every epoch, in field order.
METRIC_NAMES = tuple(f.name for f in dataclasses.fields(EpochResult) if f.name != "status")
