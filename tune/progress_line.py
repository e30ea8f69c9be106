"""A concise progress display for the study (Tune's own table is silenced): one line per finished
trial, and a status line at most every `every_s` seconds while trials run."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

from ray.tune import Callback

from tracking import STATUS_FAILED, error_reason, trial_outcome


class ProgressLine(Callback):
    def __init__(self, total: int, *, every_s: float = 30.0, stream: TextIO | None = None):
        self.total = total
        self.every_s = every_s
        self.stream = stream
        self._reset()

    def _reset(self) -> None:
        self._started = time.monotonic()
        self._last_status = self._started
        self._ended: dict[str, str] = {}

    def __getstate__(self) -> dict:
        return {"total": self.total, "every_s": self.every_s}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.stream = None
        self._reset()

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def _elapsed(self) -> str:
        seconds = int(time.monotonic() - self._started)
        return f"{seconds // 60:d}:{seconds % 60:02d}"

    def _counts(self, trials: list) -> str:
        for t in trials:  # trials restored as finished by a resume count as ended
            if t.status in ("TERMINATED", "ERROR") and t.trial_id not in self._ended:
                self._ended[t.trial_id] = STATUS_FAILED if t.status == "ERROR" else trial_outcome(t)[0]
        running = sum(1 for t in trials if t.status == "RUNNING")
        pruned = sum(1 for s in self._ended.values() if s == "pruned")
        failed = sum(1 for s in self._ended.values() if s == STATUS_FAILED)
        return (f"{len(self._ended)}/{self.total} trials ended ({pruned} pruned by ASHA, {failed} failed), "
                f"{running} running, {self._elapsed()} elapsed")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        status, _ = trial_outcome(trial)
        self._ended[trial.trial_id] = status
        last = trial.last_result or {}
        best = last.get("best_valid_pcc", math.nan)
        self._print(f"  {trial.config['cell']:<40} {status:<9} epoch {last.get('epoch', '-')!s:>3}  "
                    f"best valid PCC {best:7.4f}   [{self._counts(trials)}]")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended[trial.trial_id] = STATUS_FAILED
        self._print(f"  {trial.config['cell']:<40} failed: {error_reason(trial)}   [{self._counts(trials)}]")

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        now = time.monotonic()
        if now - self._last_status >= self.every_s:
            self._last_status = now
            self._print(f"  ... {self._counts(trials)}")
