"""The study's API: `run(spec)` runs the study a `StudySpec` describes on Ray Tune (per grid cell: Optuna
search, ASHA) and records it in MLflow; ``resume=True`` finishes the one saved under the spec's storage
and name instead. `dry_run(spec)` prints what it would run (and, with an address, what it would cost).

    from deepdiff_study import StudySpec, run
    run(StudySpec(pairs="1,3", variants="raw,aux", data="data/"))

Everything a spec names is checked before anything is written or started: the grid file, the data, the
storage, the MLflow store, the cluster (`check_places`), then the selection against the grid and the
data files. `run` returns the command line's exit status (`deepdiff_study.driver` lists them): 0 every
planned trial recorded, 1 trials Tune never handed to MLflow, 130 interrupted or unfinished; a bad
input raises a `ConfigError`, the store or the storage failing (or the store's file replaced) a
`StoreError`, no room on the cluster within --wait-timeout a `faults.ClusterError`. Ray dying on this
machine ends the process with exit 75 and one line (`deepdiff_study.faults.RayWatch`: Ray's own
client would end it a moment later with exit 1).
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from pathlib import Path

from deepdiff.command import shell_command
from deepdiff.errors import (
    EXIT_INTERRUPTED,
    ConfigError,
    DeepDiffError,
    check_input_dir,
    check_output_dir,
    path_problem,
)
from deepdiff_study.grid import Grid, GridCell, Pair, load_grid
from deepdiff_study.plan import plan_grid_cells
from deepdiff_study.spec import StudyManifest, StudySpec
from deepdiff_study.storage import StudyStorage, write_faults
from deepdiff_study.store import default_mlflow_uri
from deepdiff_study.summary import closing_summary, print_plan
from deepdiff_study.tuner import make_tuner, quiet_logs, start_ray, trial_gpus, usable_cpus

ADDRESS_TIMEOUT_S = 5  # a Ray head that does not accept a connection this fast is not there
RESUME = "rerun the same command with --resume"  # what to do after a fault, when the command line is not known


def resume_hint(command: list[str] | None) -> str:
    """What to run after a fault from outside the study: `command` (the words that started it) with
    --resume, quoted for a POSIX shell (`deepdiff.command.shell_command`), else `RESUME`."""
    if not command:
        return RESUME
    return "rerun " + shell_command(*command, *(() if "--resume" in command else ("--resume",)))


# ---- before anything is written ---------------------------------------------------------------------

def check_places(spec: StudySpec, *, resume: bool, dry_run: bool = False) -> None:
    """The places a spec names (grid, data, storage, store, cluster), checked before anything is read,
    written or started: one `ConfigError` naming the flag and what was expected. With `resume` the
    study's own grid, data and store are the saved ones (checked when its manifest is read)."""
    if not resume:
        problem = path_problem(spec.grid, "grid file")
        if problem is not None:
            raise ConfigError(f"--grid {spec.grid}: {problem}" + ("" if problem.endswith("not found") else "; expected a grid file (YAML)"))
        if spec.data is not None:
            check_input_dir(spec.data, "--data", "a folder with the paper's files (E123.train.csv ...)")
    if "://" not in spec.storage:
        check_output_dir(spec.storage, "--storage")
    if spec.mlflow_uri is not None and not resume:
        from deepdiff_study import store

        store.check_uri(spec.mlflow_uri, write=not dry_run)
    if spec.address is not None:
        check_address(spec.address)
    check_trial_resources(spec)


def check_address(address: str) -> None:
    """A HOST:PORT (or ray://HOST:PORT) must accept a connection within a few seconds (Ray itself retries
    an address that does not answer for ever); ``auto`` and ``local`` are Ray's to find."""
    import socket

    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=ADDRESS_TIMEOUT_S).close()
    except OSError as err:
        raise ConfigError(f"--address {address}: no Ray cluster answers there ({err.strerror or type(err).__name__}); "
                          "start one (ray start --head) or drop --address to run on a local Ray") from None


def check_trial_resources(spec: StudySpec) -> None:
    """A local Ray has this machine's CPUs and GPUs and no autoscaler: a trial needing more would wait
    for ever (a cluster may add nodes that fit)."""
    if spec.address is not None:
        return
    cpus = usable_cpus()
    if spec.cpus_per_trial > cpus:
        raise ConfigError(f"--cpus-per-trial {spec.cpus_per_trial:g}: this process may use {cpus} CPUs, all a local Ray "
                          f"gets; ask for at most {cpus}, or join a cluster with --address")
    gpus = spec.gpus_per_trial or 0.0
    if gpus > 0:
        import torch

        have = torch.cuda.device_count()
        if gpus > have:
            raise ConfigError(f"--gpus-per-trial {gpus:g}: this machine has {have} GPU(s), all a local Ray gets; "
                              "drop the flag (trials then run on the CPU) or join a cluster with --address")


def plan_study(spec: StudySpec, grid: Grid) -> tuple[StudySpec, list[GridCell]]:
    """The spec resolved on its grid (`StudySpec.resolved`) and its grid cells, each pair synthetic unless
    the spec names data; an --aux or --margins that no selected variant uses is noted."""
    resolved = spec.resolved(grid)
    cells = grid.grid_cells(resolved.pairs, resolved.variants, resolved.aux, resolved.margins)
    variants = ", ".join(dict.fromkeys(c.variant for c in cells))
    for name, given, used, what in (("--aux", spec.aux, any(c.aux_mode for c in cells), "an auxiliary task"),
                                    ("--margins", spec.margins, any(c.margin is not None for c in cells), "a contrastive loss")):
        if given is not None and not used:
            print(f"note: {name} ignored: none of the selected variants ({variants}) has {what}", file=sys.stderr)
    if resolved.data is None:  # synthetic data stands in for each selected pair, under a name of its own
        cells = [dataclasses.replace(c, pair=c.pair.synthetic()) for c in cells]
    return resolved, cells


def trial_fields(spec: StudySpec) -> dict:
    """Config fields every trial of the study gets beyond its grid cell's (else each trial's default)."""
    return {} if spec.precision is None else {"precision": spec.precision}


def check_sources(manifest: StudyManifest, storage: StudyStorage, *, resume: bool = False) -> list:
    """The data files and the MLflow store of a study (new or resumed): a missing file or a store that
    cannot be used is one clear error before anything is written and before Ray or Tune start. A
    resumed study's SQLite file must be there (a new empty one would hold none of its runs)."""
    from deepdiff_study import pairs as pair_files
    from deepdiff_study import store

    sources = pair_files.pair_sources([Pair(*p) for p in manifest.pairs], data_dir=manifest.data,
                                      synthetic_root=storage.local_dir / "synthetic",
                                      genes=manifest.sizes.synthetic_genes, seed=manifest.seed)
    pair_files.check_files(sources)
    db = store.sqlite_path(manifest.mlflow_uri)
    if resume and db is not None and not db.exists():
        raise ConfigError(f"--resume: the study's MLflow database {db} is missing (moved away or deleted); put it back "
                          "there and resume again (a new one would hold none of the study's runs)")
    store.check_store(manifest.mlflow_uri)
    return sources


def check_name_free(mlflow_uri: str, experiment: str, exp_dir) -> None:
    """A new study may not take a name MLflow already holds a study of (their runs would mix)."""
    from mlflow.tracking import MlflowClient

    from deepdiff_study import records

    client = MlflowClient(mlflow_uri)
    existing = client.get_experiment_by_name(experiment)
    if existing is not None and records.study_runs(client, existing.experiment_id, records.Kind.GRID_CELL):
        raise ConfigError(f"--experiment {experiment!r}: MLflow at {mlflow_uri} already holds runs of a study of "
                          f"that name (its Tune folder {exp_dir} is not there); choose another --experiment, or "
                          "pass the --storage it ran with and --resume")


# ---- running ----------------------------------------------------------------------------------------

def run(spec: StudySpec, *, resume: bool = False, train_fn=None, command: list[str] | None = None) -> int:
    """The study `spec` describes (or, with `resume`, the one saved under its storage and experiment:
    the settings it started with, this spec's cluster and storage); `train_fn`: the trial function
    (default `deepdiff_study.trainable.train_trial`); `command`: the command line that started it (for
    the resume command a fault prints). Returns an exit status (module docstring). The study's lock is
    released when it returns or raises (the same process may run it again)."""
    held: list = []
    try:
        return _run(spec, resume, train_fn, held, resume_hint(command))
    finally:
        for handle in held:
            if handle is not None:
                handle.close()


def _run(spec: StudySpec, resume: bool, train_fn, held: list, again: str) -> int:
    from deepdiff_study import pairs as pair_files
    from deepdiff_study import records, store
    from deepdiff_study import resume as saved

    check_places(spec, resume=resume)
    quiet_logs()
    experiment = spec.experiment
    storage = StudyStorage.parse(spec.storage)
    exp_dir = storage.experiment_dir(experiment)
    manifest_path = exp_dir / saved.MANIFEST
    if not resume:  # every setting, the data and the store are checked before anything is written
        grid = load_grid(spec.grid)
        spec, cells = plan_study(spec, grid)
        plans = plan_grid_cells(grid, cells, spec.sizes, seed=spec.seed, fixed=trial_fields(spec))
        manifest = StudyManifest.of(spec, cells, mlflow_uri=spec.mlflow_uri or default_mlflow_uri())
        sources = check_sources(manifest, storage)
        saved.check_start(exp_dir, experiment, resume=False)  # both before a lock file is written, and again under it
        check_name_free(manifest.mlflow_uri, experiment, exp_dir)
    if resume and storage.is_local and not Path(storage.root).is_dir():  # refused without creating the folder
        saved.check_start(exp_dir, experiment, resume=True)
    held.append(saved.lock_study(spec.storage, experiment))
    saved.check_start(exp_dir, experiment, resume=resume)
    if resume:
        manifest = saved.read_manifest(manifest_path)
        saved.check_saved_state(storage, experiment)
        print(f"resuming study {experiment!r} ({len(manifest.cells)} grid cells) from {exp_dir}; "
              "its grid and sizes are those it started with")
        ignored = spec.saved_settings_set()
        if ignored:
            print(f"note: {', '.join(ignored)} ignored with --resume: the study keeps the settings it started with "
                  f"(in {manifest_path})", file=sys.stderr)
        spec = manifest.spec(spec)
        sources = check_sources(manifest, storage, resume=True)
    held.append(saved.lock_store(manifest.mlflow_uri, experiment))
    mlflow_uri = manifest.mlflow_uri
    store_file = store.file_identity(mlflow_uri)  # the SQLite file this run writes (`faults`: not replaced)
    pairs = [Pair(*p) for p in manifest.pairs]
    store.apply_http_defaults()
    if not resume:  # checked again under the store's lock: another driver may have started meanwhile
        check_name_free(mlflow_uri, experiment, exp_dir)
    started = time.monotonic()
    print(f"preparing data for {len(pairs)} pair(s)" + ("" if manifest.data else
          f" (synthetic, {spec.sizes.synthetic_genes} genes each, in {storage.local_dir / 'synthetic'})"), flush=True)
    pair_data = pair_files.load_sources(sources, cache_dir=storage.local_dir / "cache")
    from deepdiff_study.baseline_runs import study_baselines, study_simple_models  # once per pair, on the driver

    study_baselines(mlflow_uri, experiment, pairs, pair_data, grid_file=manifest.grid, seed=manifest.seed)

    start_ray(spec.address)
    import ray

    from deepdiff_study import faults, trainable
    from deepdiff_study.progress import ProgressLine
    from deepdiff_study.tracker import MlflowTracker

    ray_watch = faults.RayWatch.of_this_node(then=f"what ran is saved: {again}").start()
    held.append(ray_watch)  # closed before Ray shuts down (else its end would read as Ray dying)
    gpus = trial_gpus(spec.gpus_per_trial)
    refs = {number: ray.put(data) for number, data in pair_data.items()}
    del pair_data
    ended = records.ended_trials(mlflow_uri, experiment) if resume else {}
    bound = trainable.bind(train_fn or trainable.train_trial, refs, cpus=spec.cpus_per_trial, gpus=gpus, ended=ended)

    if resume:
        tuner = saved.restore_tuner(bound, storage=storage, name=experiment)
    else:
        by_number = {s.pair.number: s for s in sources}
        tags = {
            c.key: {**records.grid_cell_tags(c, grid.cell_names(c.pair)),
                    records.Tag.SEARCH_SPACE: records.encode_search_space(grid.space_for(c)),
                    records.Tag.DATA: records.data_tag(by_number[c.pair.number].dir, c.pair.epigenome_a,
                                                       c.pair.epigenome_b, by_number[c.pair.number].synthetic)}
            for c in cells
        }
        tracker = MlflowTracker(mlflow_uri, experiment, tags, {p.key: p.samples for p in plans},
                                artifact_location=records.artifact_location(mlflow_uri))
        total = sum(p.samples for p in plans)
        saved.write_manifest(manifest_path, manifest)
        tuner = make_tuner(bound, plans, spec.sizes, seed=spec.seed, storage=storage, name=experiment,
                           callbacks=[faults.FaultWatch(), tracker, ProgressLine(total)], max_failures=spec.max_failures,
                           warm_starts=spec.warm_starts)
        print_plan(cells, spec.sizes, spec.preset)
    print(f"\nrunning on Ray ({ray.cluster_resources().get('CPU', 0):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} GPUs; "
          f"{spec.cpus_per_trial:g} CPU + {gpus:g} GPU per trial); MLflow: {mlflow_uri}", flush=True)
    # SIGTERM (`ray job stop`, a scheduler ending the job, `kill`) stops the study as Ctrl-C does: Tune
    # saves its state and the closing summary says what is unfinished (Ray's own handler just dies).
    trainable.quiet_interrupts_in_callbacks()
    def terminated(signum, frame):
        ray_watch.interrupted.set()
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, terminated)
    check_store = lambda: store.check_same_file(mlflow_uri, store_file, again)  # noqa: E731
    watched = faults.Session(
        storage=spec.storage, check_store=check_store, ray=ray_watch, write_faults=write_faults,
        faults_before=len(write_faults()), then=again,
        waiting=faults.Waiting(faults.Request(spec.cpus_per_trial, gpus), spec.wait_timeout, "the next trial",
                               f"what ran is saved: {again} once it has room", never_is_usage=False))
    try:
        with faults.watching(watched):
            results = tuner.fit()
        faults.check(watched)  # Tune's last snapshot written, the store the same file: else not "finished"
    except DeepDiffError:
        faults.stopped_on_a_fault()
        raise
    except Exception as err:
        known = faults.raised_within(err)  # raised by a Tune callback, which Tune wraps in a TuneError
        if known is not None:
            faults.stopped_on_a_fault()
            raise known from None
        reason = store.store_failure(err)
        if reason is None:
            raise
        raise store.StoreError(f"the study stopped: its MLflow store or storage failed ({reason}); what ran so far "
                               f"is saved: fix the cause and {again}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    wall = time.monotonic() - started
    # Trials Tune failed; one that never reached MLflow was dropped by Tune before it started (no callback).
    # (After Ctrl-C or SIGTERM Tune marks the trials it stops TERMINATED in memory, so statuses in
    # `results` cannot tell a finished study from an interrupted one; MLflow's records can.)
    tune_errors = {Path(r.path).name.rsplit("-", 1)[-1] for r in results if r.error is not None}
    # The simple models after the trials (minutes per pair at the paper's size: they never delay a trial),
    # each pair's data fetched back from the object store when it is needed.
    status = closing_summary(experiment, manifest, exp_dir, wall, tune_errors=tune_errors, when_ended=lambda: (
        study_simple_models(mlflow_uri, experiment, pairs, lambda number: ray.get(refs[number]), seed=manifest.seed)))
    if status != EXIT_INTERRUPTED:  # every trial ended: Tune's last snapshot names each one's last checkpoint
        storage.prune_checkpoints(experiment)
    return status


# ---- a dry run ----------------------------------------------------------------------------------------

def dry_run(spec: StudySpec) -> int:
    """The grid cells and planned trials (with an address: the cost, from a short calibration); trains
    nothing, writes nothing."""
    check_places(spec, resume=False, dry_run=True)
    grid = load_grid(spec.grid)
    spec, cells = plan_study(spec, grid)
    if spec.data is not None:  # the same check as the real start, so a dry run vouches for the data
        from deepdiff_study import pairs as pair_files

        chosen = sorted({c.pair for c in cells}, key=lambda p: p.number)
        pair_files.check_files(pair_files.pair_sources(chosen, data_dir=spec.data, synthetic_root=".", genes=0))
    print_plan(cells, spec.sizes, spec.preset)
    if spec.address:
        estimate_cost(spec, grid, cells)
    return 0


def estimate_cost(spec: StudySpec, grid: Grid, cells: list[GridCell]) -> None:
    """Trials at once on the cluster and the GPU-/CPU-hours of the study, from a short calibration run
    there (`deepdiff_study.calibrate`)."""
    from deepdiff_study import calibrate

    plans = plan_grid_cells(grid, cells, spec.sizes, seed=spec.seed, fixed=trial_fields(spec))
    genes = calibrate.study_genes(spec.data, plans, spec.sizes.synthetic_genes)
    start_ray(spec.address)
    import ray

    gpus = trial_gpus(spec.gpus_per_trial)
    print(f"\ncalibrating on the cluster at {spec.address}: {len({p.cell.variant for p in plans})} variant(s), "
          f"{calibrate.CALIBRATION_EPOCHS} epochs each (waits up to --wait-timeout {spec.wait_timeout:g} s for room, e.g. "
          "for the autoscaler if no node fits a trial yet)", flush=True)
    from deepdiff_study.faults import Request, Waiting

    waiting = Waiting(Request(spec.cpus_per_trial, gpus), spec.wait_timeout, "a calibration task",
                      "rerun the dry run once the cluster has room (without --address it prints the plan alone)")
    measured = calibrate.calibrate(plans, min(genes, calibrate.CALIBRATION_GENES_MAX), cpus=spec.cpus_per_trial,
                                   gpus=gpus, seed=spec.seed, waiting=waiting)
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    calibrate.print_estimate(plans, spec.sizes, measured, genes=genes, nodes=nodes, cpus=spec.cpus_per_trial, gpus=gpus)
