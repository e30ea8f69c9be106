"""Resume: how a study killed at any moment (Ctrl-C, ``kill -9``, a lost head node) finishes with
``--resume``, with every finished trial kept, none run twice, and no MLflow run duplicated.

The whole story, in the order things happen:

1. **What is saved while a study runs.** The driver writes `MANIFEST` (``deepdiff-study.json``, a
   `deepdiff_study.spec.StudyManifest`: the grid file, the selected grid cells, the run sizes, the seed,
   the data and the MLflow URI) into the study's Tune folder before Tune starts; Tune itself saves ``tuner.pkl`` (the trainable, searcher and
   scheduler as they were at the start) and, every few seconds, its experiment state (every trial,
   its config, status and last checkpoint) plus the searcher's own save. The searcher
   (`GridCellSearcher.save`) keeps every grid cell's Optuna study, the trial -> grid cell map and the
   trials Optuna was told about. A trial checkpoints where it may end (its last epoch, its grid cell's
   ASHA rungs) and otherwise every few minutes (`deepdiff_study.trainable`). MLflow gets every epoch and
   every ending at once (the tracker logs from the driver), so MLflow can be ahead of Tune's saved state.
2. **Which command may run** (`lock_study`, `lock_store`, `study_state`, `check_start`): one driver
   per study at a time (a lock file beside the study, and one beside a SQLite store per experiment).
   A folder with ``tuner.pkl`` is a study to resume (a plain rerun is refused so nothing is
   overwritten); a manifest without ``tuner.pkl`` is a study that never started (a plain rerun starts
   it again); ``--resume`` needs a started one. Its saved files are read before Tune is handed them
   (`check_saved_state`): Tune would silently start a study over from a damaged one; on local storage
   the ones Tune unpickles must be this user's alone first (`check_tune_files`): a pickle runs code. A name that MLflow
   already holds runs of cannot start a new study (its runs would mix): choose another name.
3. **Rebuilding the study** (`restore_tuner`): `Tuner.restore` reloads ``tuner.pkl`` and the
   experiment state; finished and failed trials are kept, unfinished ones continue from their last
   checkpoint; the searcher is restored from its save. The manifest is read back into the study's
   `StudySpec` (`StudyManifest.spec`); the driver re-reads the data it names and puts it in the object
   store again.
4. **ASHA's rungs** (`replay_results`): Tune never saves a scheduler. When Tune adds a restored
   trial, `GridCellScheduler` replays the results that trial had reported (Tune's ``result.json``,
   the last line possibly cut short by the kill) into its grid cell's ASHA, so later trials are
   compared with the same rungs as before.
5. **Trials that ended just before the kill** (`hand_back`): Tune's saved state can say "running"
   for a trial that MLflow already records as ended. Training it again from its older checkpoint
   could end differently (the rungs are rebuilt, not the same), so the trainable hands back the
   recorded ending instead: the last result for completed, pruned and diverged trials, the same
   failure for trials that raised (`TrialFailedBefore`).
6. **MLflow runs left RUNNING** (`reconcile`): at its first step after a restart the tracker closes
   them with their trial's true status from Tune (and records a trial Tune saw end while the store was
   failing, which has no run yet). A run whose trial Tune never saved (it started, and perhaps
   ended, less than one experiment snapshot, about 10 s, before the kill; the study runs that work
   again under a new trial id, step 7) is deleted (MLflow keeps deleted runs until they are purged), so
   every Tune trial id appears exactly once. The tracker finds each trial's existing
   run by its ``trial_id`` tag and continues it; epochs already logged are not logged again.
7. **The searcher against Tune's trials** (`GridCellSearcher.reconcile`): a snapshot's trial list and
   the searcher's save are separate files (separate uploads to a URI storage), so a kill between them
   leaves either one ahead. At the first step after a restart, before Tune asks for a trial,
   `SearcherSync` makes the searcher agree with the restored trials: a suggestion Tune never saved
   reopens its grid cell's budget (failed in Optuna unless Optuna already learnt its end); a trial the
   searcher's save missed is counted (no extra trial for its grid cell) and Optuna learns it as an
   evaluated point.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepdiff.files import write_atomic
from deepdiff.errors import ConfigError
from deepdiff.results import diverged
from deepdiff_study.records import TUNE_ENDED, Kind, RunStatus, Tag, TrialStatus, outcome_of, study_runs
from deepdiff_study.spec import StudyManifest

if TYPE_CHECKING:
    from deepdiff_study.storage import RemotePath

MANIFEST = "deepdiff-study.json"  # beside Tune's files: what --resume needs to rebuild the study
TUNER_FILE = "tuner.pkl"  # written by Tune when the study starts
RESULT_FILE = "result.json"  # Tune's per-trial log of every reported result (one JSON object per line)
# Tune's saves of a running study (newest by name): its trials, its search wrapper, our searcher's state.
EXPERIMENT_STATE = "experiment_state-*.json"
SEARCH_GEN_STATE = "search_gen_state-*.json"  # a pickle, whatever its name says
SEARCHER_STATE = "searcher-state-*.pkl"
TRIAL_ERROR = "error.pkl"  # in a trial's folder: the exception it raised, cloudpickled by Tune
# What Tune unpickles from a study folder on a resume: tuner.pkl, the trials in the experiment state
# (fields cloudpickled as hex), its search generator's and our searcher's saves (`check_tune_files`).
UNPICKLED = (TUNER_FILE, EXPERIMENT_STATE, SEARCH_GEN_STATE, SEARCHER_STATE)


class StudyState(StrEnum):
    NEW = "new"  # nothing under this name
    UNSTARTED = "unstarted"  # a manifest but Tune never saved the study (it failed before starting)
    SAVED = "saved"  # Tune saved it: resumable


def study_state(exp_dir: Path) -> StudyState:
    if (exp_dir / TUNER_FILE).is_file() and (exp_dir / MANIFEST).is_file():
        return StudyState.SAVED
    if (exp_dir / MANIFEST).is_file() or (exp_dir / TUNER_FILE).is_file():
        return StudyState.UNSTARTED
    return StudyState.NEW


def check_start(exp_dir: Path, experiment: str, *, resume: bool) -> StudyState:
    """The folder's state if the command may run on it; a one-line error saying what to do otherwise."""
    state = study_state(exp_dir)
    if resume and state is StudyState.UNSTARTED:
        raise ConfigError(f"--resume: the study in {exp_dir} never started; run the same command without --resume to start it")
    if resume and state is StudyState.NEW:
        raise ConfigError(f"--resume: no study saved in {exp_dir}; pass the --storage it ran with, or start it without "
                          "--resume (under another --experiment if MLflow already holds this name)")
    if not resume and state is StudyState.SAVED:
        raise ConfigError(f"--experiment {experiment!r}: a study is already saved in {exp_dir}; "
                          "rerun with --resume to finish it, or choose another --experiment or --storage")
    return state


def lock_study(storage: str, experiment: str):
    """Hold an exclusive lock on the study until released (close the returned file) or this process ends;
    a one-line error if another driver holds it.

    The lock file sits in the storage folder when it is local, else in the user's cache folder (then it
    only keeps two drivers on the same machine apart). Returns the open lock file (keep a reference).
    """
    import hashlib

    if "://" in storage:
        folder = Path.home() / ".cache" / "deepdiff-tune" / "locks"
        name = hashlib.sha256(f"{storage}/{experiment}".encode()).hexdigest()[:16] + ".lock"
    else:
        folder, name = Path(storage).resolve(), f".{experiment}.lock"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--storage {storage}: cannot write there ({err.strerror or type(err).__name__})") from None
    return _lock(folder / name, f"--storage {storage}", f"--experiment {experiment!r}: {{holder}} is already running "
                 "this study; wait for it to end (or stop it) before starting or resuming it again")


def lock_store(tracking_uri: str, experiment: str):
    """The same lock on the study's MLflow experiment, for a SQLite store (a file beside the database):
    two drivers started seconds apart under one name but with different --storage both passed the
    "MLflow already holds runs of that name" check before either had written a run. A tracking server
    offers no lock: there, only `lock_study` applies. Returns the open lock file, or None."""
    from deepdiff_study.store import sqlite_path

    db = sqlite_path(tracking_uri)
    if db is None:
        return None
    import hashlib

    name = f".{db.name}.{hashlib.sha256(experiment.encode()).hexdigest()[:16]}.lock"
    return _lock(db.resolve().parent / name, f"--mlflow-uri {tracking_uri}",
                 f"--experiment {experiment!r}: {{holder}} is already running a study of that name in MLflow at "
                 f"{tracking_uri}; wait for it to end, or choose another --experiment")


def _lock(path: Path, flag: str, busy: str):
    import fcntl

    try:
        handle = open(path, "a+")
    except OSError as err:
        raise ConfigError(f"{flag}: cannot write there ({err.strerror or type(err).__name__})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(busy.format(holder=holder)) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"driver pid {os.getpid()}")
    handle.flush()
    return handle


def write_manifest(path: Path | RemotePath, manifest: StudyManifest) -> None:
    """Write the study's manifest whole: on a local folder through `deepdiff.files.write_atomic`; on a
    URI storage as one object (a store's put is all or nothing)."""
    text = manifest.dumps()
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(path, Path):
        write_atomic(path, text)
    else:
        path.write_text(text)


def read_manifest(path: Path | RemotePath) -> StudyManifest:
    """The manifest the driver wrote, every field checked: a damaged one is one line naming the field."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: unreadable study manifest ({type(err).__name__}); the study cannot be resumed "
                          "(restore the file, or start the study again under another --experiment)") from None
    return StudyManifest.load(text, str(path))


def check_saved_state(storage, name: str) -> None:
    """Tune's saved files of a study, readable before `restore_tuner` runs (`storage`: a `StudyStorage`).

    Tune starts a study over from nothing, silently, when its newest experiment state or searcher save
    cannot be read (it logs the failure and "restarts the experiment"): every trial record lost and
    the grid cells' Optuna studies reset. Reading them first (and ``tuner.pkl``, before Ray starts)
    turns that into one error, nothing changed.
    """
    import fnmatch
    import pickle
    import posixpath

    import pyarrow.fs

    fs = storage.fs or pyarrow.fs.LocalFileSystem()
    root = posixpath.join(storage.root, name)
    names = [posixpath.basename(i.path) for i in fs.get_file_info(pyarrow.fs.FileSelector(root))
             if i.type == pyarrow.fs.FileType.File]
    shown = str(storage.experiment_dir(name))
    if storage.fs is None or isinstance(storage.fs, pyarrow.fs.LocalFileSystem):  # who wrote it: local files only
        check_tune_files(Path(root), names)
    for pattern, load in ((TUNER_FILE, pickle.loads), (EXPERIMENT_STATE, _trial_states), (SEARCH_GEN_STATE, pickle.loads),
                          (SEARCHER_STATE, pickle.loads)):
        saved = sorted(fnmatch.filter(names, pattern))
        if not saved:  # killed before Tune's first save: nothing to lose, Tune starts it anew
            continue
        try:
            with fs.open_input_stream(posixpath.join(root, saved[-1])) as fh:
                load(fh.read())
        except Exception as err:  # noqa: BLE001 - a damaged file of any kind
            older = f"; move it away to resume from the older {saved[-2]}" if len(saved) > 1 else ""
            raise ConfigError(f"{shown}/{saved[-1]}: damaged ({type(err).__name__}); the study cannot be resumed from "
                              f"it and nothing was changed{older}") from None


def check_tune_files(exp_dir: Path, names: list[str]) -> None:
    """Every file of a local study folder that Tune unpickles on a resume (`UNPICKLED`, and each trial
    folder's pickled error) and the folders holding them: this user's alone (`untrusted.check_private`),
    checked before anything is read. Tune's pickles run code of whoever wrote them."""
    import fnmatch

    from deepdiff_study.untrusted import check_private

    saved = [exp_dir / n for n in names if any(fnmatch.fnmatch(n, pattern) for pattern in UNPICKLED)]
    for path in [*saved, *sorted(exp_dir.glob(f"*/{TRIAL_ERROR}"))]:
        check_private(path, "--resume")


def _trial_states(data: bytes) -> None:
    state = json.loads(data)
    if not isinstance(state, dict) or "trial_data" not in state or "runner_data" not in state:
        raise ValueError("not a Tune experiment state")


def restore_tuner(trainable, *, storage, name: str):
    """The study saved under storage/name (`storage`: a `deepdiff_study.storage.StudyStorage`): finished
    and failed trials kept, unfinished ones continued from their last checkpoint, the searcher (every
    grid cell's Optuna study) restored from its save."""
    from ray import tune

    try:
        return tune.Tuner.restore(trainable=trainable, **storage.tune_restore_kwargs(name), resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    except Exception as err:  # noqa: BLE001 - tuner.pkl damaged or not Tune's, or the storage failing
        from deepdiff_study.store import StoreError, store_failure

        reason = store_failure(err) if isinstance(err, OSError) else None
        if reason is not None:
            raise StoreError(f"--storage: the study's files cannot be read ({reason}); fix it and --resume again") from None
        raise ConfigError(f"{storage.experiment_dir(name) / TUNER_FILE}: Tune cannot restore the study from it "
                          f"({type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}); it is not resumed") from None


def replay_results(trial, feed: Callable[[dict], Any], *, usable: Callable[[dict], bool]) -> int:
    """Feed every usable result a restored (or retried) trial reported before to `feed`; returns how many.

    Tune keeps ``result.json`` in the driver's staging folder and syncs it to the study's storage; the
    staging copy is read if there, else the stored one (a URI storage after a restart on a new driver
    machine has no staging copy). A line cut short by a kill is skipped.
    """
    if not trial.has_reported_at_least_once:
        return 0
    from deepdiff_study import ray_private

    local = Path(trial.local_path) / RESULT_FILE if trial.local_path else None
    text = local.read_text() if local is not None and local.is_file() else ray_private.read_trial_file(trial, RESULT_FILE)
    if text is None:
        return 0
    fed = 0
    for line in text.splitlines():
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue
        if usable(result):
            feed(result)
            fed += 1
    return fed


class TrialFailedBefore(RuntimeError):
    """A resumed trial that had already failed (raised) before the driver was killed."""


def hand_back(recorded: dict[str, Any], report: Callable[[dict], None]) -> None:
    """Return what a trial had already produced before the kill, without training (step 5 above).

    `recorded`: the trial's entry in `records.ended_trials`; `report`: ``ray.tune.report``.
    """
    if recorded["status"] is TrialStatus.FAILED and not diverged(recorded["last"].get("status")):
        raise TrialFailedBefore(f"failed before the restart: {recorded['reason']}")
    report(recorded["last"])


def reconcile(client, experiment_id: str, trials: list, *, finish: Callable, forget: Callable[[str], None]) -> None:
    """Close the trial runs a killed driver left RUNNING (step 6 above).

    finish(trial, status, reason): close a run with its trial's outcome; forget(trial_id): drop the
    tracker's memory of a run deleted here.
    """
    by_id = {t.trial_id: t for t in trials}
    recorded = set()
    for run in study_runs(client, experiment_id, Kind.TRIAL):
        trial_id = run.data.tags[Tag.TRIAL_ID]
        recorded.add(trial_id)
        trial = by_id.get(trial_id)
        if trial is None:  # Tune never saved it: it runs that work again under a new trial id
            client.delete_run(run.info.run_id)
            forget(trial_id)
        elif run.info.status == RunStatus.RUNNING and trial.status in TUNE_ENDED:
            finish(trial, *outcome_of(trial))
    # A trial that ended while the store was failing (the driver stopped on it) has no run at all yet.
    for trial in trials:
        if trial.trial_id not in recorded and trial.status in TUNE_ENDED:
            finish(trial, *outcome_of(trial))

