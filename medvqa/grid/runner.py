"""Run the cells of a grid: one at a time here, or one job per cell through submitit (SLURM) or a dask pool.

A cell is one training run, ``<out>/cells/<dataset>/<head>/<encoder>/s<seed>/``, trained from the config
written beside it (``s<seed>.yaml``) and evaluated under the grid's protocols. It is complete when
``cell.json`` is there: that file is written atomically, after everything else, so an interrupted cell
never looks finished. Running the grid again skips the complete cells and resumes the others through
``medvqa train``'s own resume (after the last finished epoch). A cell in training holds ``s<seed>.lock``, so
processes sharing one grid directory never train the same cell twice at once.
"""
from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import UserError
from infra.files import file_lock, write_text_atomic
from infra.runs import first_difference
from medvqa.config import run_identity
from medvqa.grid.spec import CellPlan, dump_config

CELL_FILE = "cell.json"
ENGINES = ("local", "submitit", "dask")


@dataclass(frozen=True)
class Outcome:
    cell: str
    state: str  # "done", "busy" (another process trains it) or "failed"
    reason: str = ""


class CellBusy(Exception):
    """Another process holds the cell's lock: it is training the cell now."""


def failure_file(plan: CellPlan) -> Path:
    """Why the cell's last attempt failed, kept beside it until an attempt succeeds (any process can read it)."""
    return plan.run_dir.with_name(f"{plan.run_dir.name}.failed")


def cell_state(plan: CellPlan) -> str:
    """``done`` (cell.json written), ``partial`` (started, not finished), ``pending`` or ``skipped``."""
    if (plan.run_dir / CELL_FILE).is_file():
        return "done"
    if plan.skip:
        return "skipped"
    return "partial" if plan.run_dir.exists() else "pending"


def check_finished(plan: CellPlan) -> dict[str, Any]:
    """The ``cell.json`` of a finished cell, refused when the grid now asks another config of it."""
    path = plan.run_dir / CELL_FILE
    finished = json.loads(path.read_text())
    difference = first_difference(finished["identity"], run_identity(plan.config))
    if difference is not None:
        raise UserError(f"cell {plan.name} was finished with another config ({difference}): "
                        f"choose another --out, or delete {plan.run_dir}")
    return finished


def run_cell(plan: CellPlan) -> dict[str, Any]:
    """Train (or resume) and evaluate one cell; write its ``cell.json`` last. A finished cell is not re-run."""
    if (plan.run_dir / CELL_FILE).is_file():
        return check_finished(plan)
    try:
        with file_lock(plan.run_dir.with_name(f"{plan.run_dir.name}.lock"), wait=False):
            if (plan.run_dir / CELL_FILE).is_file():  # finished by another process meanwhile
                return check_finished(plan)
            return train_and_evaluate(plan)
    except BlockingIOError:
        raise CellBusy(plan.name) from None


def train_and_evaluate(plan: CellPlan) -> dict[str, Any]:
    from medvqa import evaluate, train

    began = time.perf_counter()
    config_path = plan.run_dir.with_name(f"{plan.run_dir.name}.yaml")
    write_text_atomic(config_path, dump_config(plan.config))
    status = train.main(["--config", str(config_path), "--out", str(plan.run_dir)])
    if status != 0:
        raise UserError(f"training {plan.run_dir} failed with status {status}")
    results = {}
    for protocol in plan.protocols:
        path = plan.run_dir / f"results_{protocol}.json"
        result = json.loads(path.read_text()) if path.is_file() else evaluate.evaluate_run(plan.run_dir, protocol)
        results[protocol] = {key: result[key] for key in ("open", "closed", "overall", "epoch")}
    metrics = json.loads((plan.run_dir / "metrics.json").read_text())
    finished = {"cell": plan.name, "dataset": plan.dataset, "head": plan.head, "encoder": plan.encoder,
                "seed": plan.seed, "results": results, "identity": run_identity(plan.config),
                "epochs": len(metrics), "train_seconds": round(sum(row["seconds"] for row in metrics), 2),
                "seconds": round(time.perf_counter() - began, 2)}
    write_text_atomic(plan.run_dir / CELL_FILE, json.dumps(finished, indent=1) + "\n")
    return finished


def attempt(plan: CellPlan) -> Outcome:
    """``run_cell`` with a failure (bad input such as a wrong checkpoint, or a crash) recorded in the cell's
    failure file, not raised: the other cells still run."""
    try:
        run_cell(plan)
    except CellBusy:
        print(f"cell {plan.name} is being trained by another process: left to it", flush=True)
        return Outcome(plan.name, "busy", "trained by another process")
    except Exception as error:
        if not isinstance(error, UserError):
            traceback.print_exc()
        reason = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
        write_text_atomic(failure_file(plan), reason + "\n")
        return Outcome(plan.name, "failed", reason)
    failure_file(plan).unlink(missing_ok=True)
    return Outcome(plan.name, "done")


def run_local(cells: Sequence[CellPlan], options: Mapping[str, str]) -> list[Outcome]:
    if options:
        raise UserError(f"--engine local takes no --engine-option (got {', '.join(options)})")
    outcomes = []
    for index, plan in enumerate(cells):
        print(f"[{index + 1}/{len(cells)}] cell {plan.name}", flush=True)
        outcomes.append(attempt(plan))
    return outcomes


def run_submitit(cells: Sequence[CellPlan], options: Mapping[str, str], folder: Path) -> list[Outcome]:
    """One job per cell. ``options``: ``cluster`` (slurm, local, debug; default: SLURM where there is one)
    and any executor parameter (``timeout_min``, ``slurm_partition``, ``gpus_per_node``, ...)."""
    import submitit

    options = dict(options)
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=options.pop("cluster", None))
    try:
        executor.update_parameters(**{key: _number(value) for key, value in options.items()})
    except (ValueError, TypeError) as error:
        raise UserError(f"--engine-option: {error}") from None
    jobs = [executor.submit(attempt, plan) for plan in cells]
    print(f"submitted {len(jobs)} jobs to {executor.cluster} (logs in {folder})", flush=True)
    return [job_outcome(plan, job.result) for plan, job in zip(cells, jobs)]


def job_outcome(plan: CellPlan, result: Callable[[], Outcome]) -> Outcome:
    """A job's outcome; a job that died outside ``attempt`` (a cluster time limit, a lost worker) is failed too."""
    try:
        return result()
    except Exception as error:
        lines = str(error).strip().splitlines()
        reason = f"job failed: {type(error).__name__}" + (f": {lines[-1]}" if lines else "")
        write_text_atomic(failure_file(plan), reason + "\n")
        return Outcome(plan.name, "failed", reason)


def run_dask(cells: Sequence[CellPlan], options: Mapping[str, str]) -> list[Outcome]:
    """One task per cell on a dask pool: ``scheduler=ADDRESS`` (a running cluster) or ``workers=N``
    local worker processes (default 1), one cell at a time each."""
    from dask.distributed import Client, LocalCluster

    unknown = set(options) - {"scheduler", "workers"}
    if unknown:
        raise UserError(f"--engine-option {sorted(unknown)[0]}: dask takes scheduler=ADDRESS or workers=N")
    if "scheduler" in options:
        return gather_outcomes(Client(options["scheduler"]), cells)
    workers = options.get("workers", "1")
    if not workers.isdigit() or int(workers) < 1:
        raise UserError(f"--engine-option workers={workers}: expected a whole number of worker processes, e.g. 2")
    with LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        return gather_outcomes(Client(cluster), cells)


def gather_outcomes(client: Any, cells: Sequence[CellPlan]) -> list[Outcome]:
    """``attempt`` every cell on the dask ``client`` (closed afterwards)."""
    with client:
        futures = client.map(attempt, list(cells), pure=False)
        return [job_outcome(plan, future.result) for plan, future in zip(cells, futures)]


def _number(value: str) -> Any:
    try:
        return int(value)
    except ValueError:
        return value


def run_cells(cells: Sequence[CellPlan], engine: str, options: Mapping[str, str], out: Path) -> list[Outcome]:
    """Run ``cells`` (none finished or skipped) on ``engine``."""
    runners: dict[str, Callable[[], list[Outcome]]] = {
        "local": lambda: run_local(cells, options),
        "submitit": lambda: run_submitit(cells, options, out / "jobs"),
        "dask": lambda: run_dask(cells, options),
    }
    return runners[engine]() if cells else []
