"""The study's progress display (Tune's own table is silenced): one line per ended trial, and a status
line at most every `every_s` seconds while trials run, with a time estimate once a few trials ended."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

from ray.tune import Callback

from deepdiff_study.records import TUNE_ENDED, TrialStatus, TuneStatus, error_reason, grid_cell_of, outcome_of

ESTIMATE_AFTER = 3  # trials ended in this session before a time estimate is shown


def clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss`` from an hour on)."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressLine(Callback):
    def __init__(self, total: int, *, every_s: float = 30.0, stream: TextIO | None = None):
        self.total = total
        self.every_s = every_s
        self.stream = stream
        self._reset()

    def _reset(self) -> None:
        self._started = time.monotonic()
        self._last_status = self._started
        self._ended: dict[str, TrialStatus] = {}
        self._before = 0  # trials that had ended before this session (a resume)
        self._first = True  # the first look at the trials: those ended already are a resume's

    def __getstate__(self) -> dict:
        return {"total": self.total, "every_s": self.every_s}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.stream = None
        self._reset()

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def _counts(self, trials: list) -> str:
        unheard = []
        for t in trials:
            if t.status in TUNE_ENDED and t.trial_id not in self._ended:
                status, reason = outcome_of(t)
                self._ended[t.trial_id] = status
                if self._first:  # restored as ended by a resume: not this session's work
                    self._before += 1
                else:  # ended without a callback (Tune failed it before it started): said, not skipped
                    unheard.append(f"  {grid_cell_of(t.config):<40} {status}: {reason}")
        self._first = False
        for line in unheard:
            self._print(line)
        running = sum(1 for t in trials if t.status == TuneStatus.RUNNING and t.trial_id not in self._ended)
        pruned = sum(1 for s in self._ended.values() if s is TrialStatus.PRUNED)
        failed = sum(1 for s in self._ended.values() if s is TrialStatus.FAILED)
        elapsed = time.monotonic() - self._started
        text = (f"{len(self._ended)}/{self.total} trials ended ({pruned} pruned by ASHA, {failed} failed), "
                f"{running} running, {clock(elapsed)} elapsed")
        done_here = len(self._ended) - self._before
        left = self.total - len(self._ended)
        if done_here >= ESTIMATE_AFTER and left > 0:
            text += f", about {clock(elapsed / done_here * left)} left"
        return text

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        status, _ = outcome_of(trial)
        self._ended[trial.trial_id] = status
        last = trial.last_result or {}
        best = last.get("best_valid_pcc", math.nan)
        self._print(f"  {grid_cell_of(trial.config):<40} {status:<9} epoch {last.get('epoch', '-')!s:>3}  "
                    f"best valid PCC {best:7.4f}   [{self._counts(trials)}]")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended[trial.trial_id] = TrialStatus.FAILED
        self._print(f"  {grid_cell_of(trial.config):<40} failed: {error_reason(trial)}   [{self._counts(trials)}]")

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        now = time.monotonic()
        if now - self._last_status >= self.every_s:
            self._last_status = now
            self._print(f"  ... {self._counts(trials)}")
