"""Best trial per cell out of MLflow, into config files `deepdiff train --config FILE` reproduces.

Reads only MLflow (the study's record), never Tune's files: the runs' params are the full resolved
config, their ``data`` tag names the pair's files (and how to regenerate a synthetic pair), and the
metric ``epoch`` is the last epoch trained. A cell's best trial is its child run (completed or pruned)
with the highest ``best_valid_pcc``; its exported config trains for the epochs that trial trained, so
`deepdiff train --config` selects the same best epoch and reports the same valid PCC.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from deepdiff.config import ModelConfig, TrainConfig, configs_from_flat, save_config
from deepdiff.errors import ConfigError
from deepdiff.variants import VARIANTS

from tracking import ROLE_CELL, ROLE_TRIAL, STATUS_COMPLETED, STATUS_PRUNED, study_runs

SUMMARY_COLUMNS = (
    "cell", "variant", "pair", "cell_a", "cell_b", "aux_mode", "margin", "best_valid_pcc", "best_test_pcc",
    "best_epoch", "epochs_trained", "trial_status", "trials", "trial_id", "run_id", "config",
)
_FIELD_TYPES = {f.name: f.type for cls in (ModelConfig, TrainConfig) for f in dataclasses.fields(cls)}


def open_store(tracking_uri: str) -> MlflowClient:
    """A client of an existing store (a missing SQLite file is an error, not a new empty database)."""
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).is_file():
        raise ConfigError(f"--mlflow-uri {tracking_uri}: no MLflow database there; run the study first or pass the study's --mlflow-uri")
    return MlflowClient(tracking_uri)


def experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        known = sorted(e.name for e in client.search_experiments())
        raise ConfigError(f"--experiment {name!r}: no such MLflow experiment at {client.tracking_uri}; "
                          f"found {', '.join(known) if known else 'none'}")
    return experiment.experiment_id


def typed_params(params: dict[str, str]) -> dict[str, Any]:
    """MLflow params (strings) back to config values, by the config fields' types."""
    convert = {"int": int, "float": float, "str": str, "bool": lambda s: s == "True"}
    return {k: convert[_FIELD_TYPES[k]](v) for k, v in params.items() if k in _FIELD_TYPES}


def best_trials(tracking_uri: str, experiment: str) -> list[dict[str, Any]]:
    """One row per cell of the study (grid order of pair, variant, aux mode, margin) with its best trial."""
    client = open_store(tracking_uri)
    exp_id = experiment_id(client, experiment)
    cells = {run.data.tags["cell"]: run for run in study_runs(client, exp_id, ROLE_CELL)}
    children: dict[str, list] = {}
    for run in study_runs(client, exp_id, ROLE_TRIAL):
        children.setdefault(run.data.tags["cell"], []).append(run)
    rows = []
    for key, parent in cells.items():
        tags = parent.data.tags
        scored = [
            r for r in children.get(key, [])
            if r.data.tags.get("status") in (STATUS_COMPLETED, STATUS_PRUNED)
            and math.isfinite(r.data.metrics.get("best_valid_pcc", math.nan))
        ]
        best = max(scored, key=lambda r: r.data.metrics["best_valid_pcc"]) if scored else None
        metrics = best.data.metrics if best else {}
        rows.append({
            "cell": key, "variant": tags["variant"], "pair": int(tags["pair"]), "cell_a": tags["cell_a"],
            "cell_b": tags["cell_b"], "aux_mode": None if tags["aux_mode"] == "-" else tags["aux_mode"],
            "margin": None if tags["margin"] == "-" else float(tags["margin"]),
            "best_valid_pcc": metrics.get("best_valid_pcc", math.nan),
            "best_test_pcc": metrics.get("best_test_pcc", math.nan),
            "best_epoch": int(metrics["best_epoch"]) if "best_epoch" in metrics else None,
            "epochs_trained": int(metrics["epoch"]) if "epoch" in metrics else None,
            "trial_status": best.data.tags.get("status") if best else None,
            "trials": len(children.get(key, [])),
            "trial_id": best.data.tags.get("trial_id") if best else None,
            "run_id": best.info.run_id if best else None,
            "_run": best,
        })
    order = {v: i for i, v in enumerate(VARIANTS)}
    rows.sort(key=lambda r: (r["pair"], order.get(r["variant"], 99), r["aux_mode"] or "", r["margin"] or 0.0))
    return rows


def export_best(tracking_uri: str, experiment: str, out_dir: str | Path) -> pd.DataFrame:
    """Write ``configs/<cell>.yaml`` per cell's best trial plus ``summary.csv`` and ``summary.parquet``."""
    out = Path(out_dir)
    rows = best_trials(tracking_uri, experiment)
    for row in rows:
        run = row.pop("_run")
        row["config"] = None
        if run is None:
            continue
        values = typed_params(run.data.params)
        if row["epochs_trained"]:
            values["epochs"] = row["epochs_trained"]
        model_cfg, train_cfg = configs_from_flat(values, source=f"MLflow run {run.info.run_id}")
        data = json.loads(run.data.tags["data"]) if "data" in run.data.tags else None
        path = save_config(out / "configs" / f"{row['cell']}.yaml", model_cfg, train_cfg, data)
        row["config"] = str(path.relative_to(out))
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "summary.csv", index=False)
    table.to_parquet(out / "summary.parquet", index=False)
    return table


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of best PCC per cell (what the study prints when it ends)."""
    header = f"{'cell':<40} {'valid PCC':>9} {'test PCC':>9} {'epoch':>5} {'trials':>6}  best trial"
    lines = [header, "-" * len(header)]
    for r in rows:
        valid, test = r["best_valid_pcc"], r["best_test_pcc"]
        lines.append(
            f"{r['cell']:<40} {valid:>9.4f} {test:>9.4f} {r['best_epoch'] or '-':>5} {r['trials']:>6}  "
            f"{r['trial_id'] or '-'}" if math.isfinite(valid) else
            f"{r['cell']:<40} {'-':>9} {'-':>9} {'-':>5} {r['trials']:>6}  (no successful trial)"
        )
    return "\n".join(lines)
