"""Every Ray/Optuna internal that deepdiff_study/ray_private.py uses still exists in the installed
versions. A failure here means: the installed ray or optuna changed; re-check ray_private.py before
widening the bounds in pyproject.toml."""

import importlib.util
import inspect
from pathlib import Path

import optuna
import ray
from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.search.optuna import OptunaSearch

from deepdiff_study import ray_private

RAY_ROOT = Path(ray.__file__).parent


def test_installed_versions_are_the_ones_ray_private_was_checked_against():
    assert ray.__version__.startswith("2.60."), ray.__version__
    assert optuna.__version__.startswith("5.0."), optuna.__version__


def test_tune_still_reads_the_environment_switches():
    sources = "\n".join(p.read_text(errors="replace") for p in (RAY_ROOT / "tune").rglob("*.py"))
    sources += "\n".join(p.read_text(errors="replace") for p in (RAY_ROOT / "air").rglob("*.py"))
    for name in ray_private.TUNE_ENV:
        assert f'"{name}"' in sources, f"Ray Tune no longer reads {name}"


def test_the_quieted_internal_loggers_are_still_modules():
    for name in ray_private.TUNE_INTERNAL_LOGGERS:
        assert importlib.util.find_spec(name) is not None, name


def test_asha_rungs_reads_what_asha_records():
    asha = AsyncHyperBandScheduler(time_attr="epoch", metric="m", mode="max", max_t=8, grace_period=1, reduction_factor=2)
    trial = type("T", (), {"trial_id": "t1"})()
    asha.on_trial_add(None, trial)
    asha.on_trial_result(None, trial, {"epoch": 1, "m": 0.5})
    asha.on_trial_result(None, trial, {"epoch": 2, "m": 0.7})
    rungs = ray_private.asha_rungs(asha)
    assert rungs[0] == {"t1": 0.5} and rungs[1] == {"t1": 0.7}


def test_the_study_s_stop_epochs_are_asha_s_milestones():
    """Trials checkpoint at the epochs ASHA may stop them (RunSizes.stop_epochs); those must be
    the installed ASHA's milestones below max_t (at max_t a trial ends and checkpoints anyway)."""
    import math

    from deepdiff_study.schema import RunSizes

    for max_t, grace, rf in ((6, 2, 2), (90, 10, 3), (8, 1, 2), (12, 2, 1.5), (4, 4, 2), (20, 3, 4)):
        asha = AsyncHyperBandScheduler(time_attr="epoch", metric="m", mode="max", max_t=max_t, grace_period=grace,
                                       reduction_factor=rf)
        below = sorted({math.ceil(m) for m in ray_private.asha_milestones(asha) if m < max_t})
        settings = RunSizes(samples=1, max_epochs=max_t, grace_period=grace, reduction_factor=rf)
        assert list(settings.stop_epochs()) == below, (max_t, grace, rf)


def test_optuna_study_is_the_search_s_study():
    search = OptunaSearch({"x": optuna.distributions.FloatDistribution(0, 1)}, metric="m", mode="max")
    search.suggest("t1")
    study = ray_private.optuna_study(search)
    assert isinstance(study, optuna.Study) and len(study.trials) == 1


def test_public_hooks_the_study_relies_on_keep_their_signatures():
    """Not private, but load-bearing: OptunaSearch.save/restore (file paths) and ASHA's event methods."""
    assert list(inspect.signature(OptunaSearch.save).parameters) == ["self", "checkpoint_path"]
    assert list(inspect.signature(OptunaSearch.restore).parameters) == ["self", "checkpoint_path"]
    for name in ("on_trial_add", "on_trial_result", "on_trial_complete", "on_trial_remove"):
        assert "tune_controller" in inspect.signature(getattr(AsyncHyperBandScheduler, name)).parameters


def test_read_trial_file_reads_a_trial_s_folder_in_the_study_storage(tmp_path):
    from ray.train._internal.storage import StorageContext

    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name="trial1")
    trial = type("T", (), {"storage": storage})()
    folder = tmp_path / "exp" / "trial1"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text('{"epoch": 1}\n')
    assert ray_private.read_trial_file(trial, "result.json") == '{"epoch": 1}\n'
    assert ray_private.read_trial_file(trial, "missing.json") is None


def test_the_worker_thread_timeout_switch_is_read_by_tune_s_function_trainable():
    """TUNE_FUNCTION_THREAD_TIMEOUT_S: how long a reused worker waits for the last trial's thread (2 s by default)."""
    from ray.tune.trainable import function_trainable

    assert ray_private.WORKER_ENV == ("TUNE_FUNCTION_THREAD_TIMEOUT_S",)
    assert 'os.environ.get("TUNE_FUNCTION_THREAD_TIMEOUT_S"' in inspect.getsource(function_trainable)
    assert set(ray_private.WORKER_ENV) <= set(ray_private.TUNE_ENV_DEFAULTS)


def test_the_tune_status_names_are_tune_s_own():
    from ray.tune.experiment import Trial

    from deepdiff_study.records import TUNE_ENDED, TuneStatus

    assert {s.value for s in TuneStatus} == {Trial.PENDING, Trial.RUNNING, Trial.PAUSED, Trial.TERMINATED, Trial.ERROR}
    assert TUNE_ENDED == {Trial.TERMINATED, Trial.ERROR}
