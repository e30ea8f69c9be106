"""The run folder of ``deepdiff train --out DIR``: its files, a resume, and Ctrl-C kept in step with them.

    config.yaml        the resolved config (model, train and data sections): ``deepdiff train --config`` reruns it
    metrics.csv        one row per epoch (`EpochResult.metrics()` and its status), replaced whole each epoch
    last.pt, best.pt   the checkpoints, written by `deepdiff.train.fit`
    result.json        the summary and the config, written when the run ends

`RunFolder.open` checks a folder for a new run, or for the run a resume continues, before anything is
written: a refused run changes nothing. config.yaml's data section records the data a run trains on
(folder, cells and `PairData.fingerprint`); `check_data` refuses a resume on other data (another pair,
the cells swapped, other contents) before anything is written, and notes data that only moved. `start` writes config.yaml, `record` an epoch's metrics row,
`finish` result.json; every file is replaced whole (`deepdiff.files.write_atomic`). `DeferredInterrupt`
holds Ctrl-C back until the epoch's files agree with each other.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shlex
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepdiff.command import say
from deepdiff.config import ModelConfig, TrainConfig, load_config, save_config
from deepdiff.errors import ConfigError, check_output_dir
from deepdiff.files import write_atomic
from deepdiff.results import EpochResult
from deepdiff.train import COMPUTE_DTYPE, LAST_CHECKPOINT, check_resumable, load_checkpoint

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
RESULT_FILE = "result.json"


@dataclass
class RunFolder:
    """A checked run folder; `rows` grows by one metrics row per epoch (`record`)."""

    path: Path
    resume_from: Path | None = None  # the last.pt this run continues; None for a new run
    done: int = 0  # epochs trained before this run (those of `resume_from`)
    trained_in: str | None = None  # what `resume_from`'s steps computed in (`deepdiff.device.dtype_name`), if recorded
    rows: list[dict[str, Any]] = field(default_factory=list)  # metrics.csv so far
    trained_on: dict[str, Any] | None = None  # the data section of the config.yaml `resume_from` was trained with

    @classmethod
    def open(cls, path: str | Path, model_cfg: ModelConfig, train_cfg: TrainConfig, *, resume: bool) -> "RunFolder":
        """The folder `path` checked for a run of these configs; writes nothing.

        A folder that already holds a run (a last.pt) is refused unless `resume`; with `resume`, its
        last.pt must be a run of these configs with fewer epochs than ``train_cfg.epochs``, and its
        metrics.csv rows up to that epoch are kept. A `ConfigError` names what is wrong.
        """
        path = Path(path)
        check_output_dir(path, "--out")
        last = path / LAST_CHECKPOINT
        if last.exists() and not resume:
            raise ConfigError(f"{path}: already holds a run ({LAST_CHECKPOINT}); pass --resume to continue it or choose another --out")
        if not (resume and last.exists()):
            return cls(path)
        state = load_checkpoint(last)
        check_resumable(last, state, model_cfg, train_cfg)
        done = state["epoch"]
        if done >= train_cfg.epochs:
            raise ConfigError(f"{path}: this run already finished {done} epochs; raise --epochs above {done} to train on")
        config = path / CONFIG_FILE
        trained_on = load_config(config)[2] if config.is_file() else None
        return cls(path, last, done, state.get(COMPUTE_DTYPE), _previous_rows(path / METRICS_FILE, done), trained_on)

    def check_data(self, data: dict[str, Any]) -> str | None:
        """On a resume, a `ConfigError` unless `data` (the data section this run records: dir, cell_a, cell_b,
        fingerprint) is the data the run trained on: the same cells in the same order and the same
        `PairData.fingerprint`. Returns a note when the same data moved to another folder, or when the
        run's config.yaml (an older deepdiff's) records no fingerprint to compare; else None."""
        before = self.trained_on
        if self.resume_from is None or before is None:
            return None
        other = f"{self.path}: cannot resume on other data"
        fresh = "or choose another --out for a new run"
        was, now = (before.get("cell_a"), before.get("cell_b")), (data["cell_a"], data["cell_b"])
        if was != now:
            raise ConfigError(f"{other}: it trained on {was[0]} -> {was[1]}, now {now[0]} -> {now[1]}; "
                              f"pass --pair {was[0]} {was[1]} to continue it, {fresh}")
        moved = before.get("dir") != data["dir"]
        if "fingerprint" not in before:
            return (f"{self.path / CONFIG_FILE} records no fingerprint of its data (an older deepdiff wrote it): "
                    f"not checked that {data['dir']} holds the data it trained on" + (f" in {before.get('dir')}" if moved else ""))
        if before["fingerprint"] != data["fingerprint"]:
            where = f"{data['dir']}" if not moved else f"{data['dir']}, not {before.get('dir')} it trained on,"
            raise ConfigError(f"{other}: {was[0]}/{was[1]} in {where} holds other contents (fingerprint "
                              f"{data['fingerprint'][:12]}, {before['fingerprint'][:12]} in its {CONFIG_FILE}); pass the "
                              f"--data it trained on" + (f" (--data {shlex.quote(str(before.get('dir')))})" if moved else "") +
                              f" to continue it, {fresh}")
        if moved:
            return f"{self.path} trained on {before.get('dir')}; it goes on with the same data (same fingerprint) in {data['dir']}"
        return None

    def start(self, model_cfg: ModelConfig, train_cfg: TrainConfig, data: dict[str, Any]) -> None:
        """Create the folder and write its config.yaml (rewritten on a resume: it may raise the epochs; its data
        section names the data trained on, with its fingerprint, once `check_data` accepted it)."""
        self.path.mkdir(parents=True, exist_ok=True)
        save_config(self.path / CONFIG_FILE, model_cfg, train_cfg, data)

    def record(self, result: EpochResult) -> None:
        """Add the epoch's row to metrics.csv (after fit() wrote the epoch's checkpoints)."""
        self.rows.append(result.metrics() | {"status": result.status})
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=list(self.rows[0]))
        writer.writeheader()
        writer.writerows(self.rows)
        write_atomic(self.path / METRICS_FILE, text.getvalue())

    def finish(self, summary: dict[str, Any], model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
        """Write result.json: `summary` and the run's whole config."""
        config = dataclasses.asdict(model_cfg) | dataclasses.asdict(train_cfg)
        write_atomic(self.path / RESULT_FILE, json.dumps(summary | {"config": config}, indent=2))


def _previous_rows(path: Path, up_to_epoch: int) -> list[dict[str, Any]]:
    """The rows of metrics.csv at `path` up to epoch `up_to_epoch` (none if there is no file)."""
    if not path.is_file():
        return []
    try:
        with path.open() as fh:
            return [row for row in csv.DictReader(fh) if int(row["epoch"]) <= up_to_epoch]
    except (KeyError, TypeError, ValueError, UnicodeDecodeError, csv.Error):
        raise ConfigError(f"{path}: not a metrics file written by deepdiff train (expected an epoch column)") from None


class DeferredInterrupt:
    """Ctrl-C while training stops at the next point where the run's files agree with each other.

    fit() writes last.pt, then the caller records the epoch's metrics.csv row: an interrupt between the
    two left a checkpoint one epoch ahead of metrics.csv, and a resume lost that epoch's row. The first
    Ctrl-C is noted and raised at the next `check` (call it at each batch, where nothing of the epoch is
    written yet, and after the epoch's files); a second one stops at once.
    """

    def __init__(self) -> None:
        self.pending = False

    def __enter__(self) -> "DeferredInterrupt":
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: object) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True
        say("\ninterrupt: stopping once this epoch's files agree (Ctrl-C again to stop at once)")

    def check(self) -> None:
        if self.pending:
            raise KeyboardInterrupt
