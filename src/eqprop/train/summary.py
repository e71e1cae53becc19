"""The summary of a sweep: one CSV row per run and one comparison plot, written by ``--multirun``.

:class:`SweepSummary` is a Hydra callback (``hydra.callbacks`` in ``configs/config.yaml``): after
each job of a multirun and at the end of the sweep it writes ``<sweep dir>/summary.csv`` and
``<sweep dir>/summary.png`` (test accuracy per epoch of every run, on one axis). Written after
each job, the summary also covers a sweep that stops early. :func:`summarize` does the same for
any list of run directories, e.g. from a notebook.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from .metrics import read_csv

__all__ = ["summarize", "summary_rows", "SUMMARY_FIELDS", "SweepSummary"]

log = logging.getLogger(__name__)

SUMMARY_FIELDS = ["run", "learner", "model", "data", "seed", "epochs", "steps", "train_loss", "train_accuracy",
                  "test_loss", "test_accuracy", "best_test_accuracy", "seconds"]


def _short(target: Any) -> str:
    return str(target).rsplit(".", 1)[-1] if target else ""


def _run_facts(run_dir: Path) -> dict[str, Any]:
    """Learner, model, data and seed of a run, from its resolved config (empty strings if it has none)."""
    path = run_dir / "resolved_config.yaml"
    if not path.exists():
        return {}
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    learner = cfg.get("learner") or {}
    name = _short(learner.get("_target_"))
    if isinstance(learner.get("variant"), str):
        name += f" ({learner['variant']})"
    return {"learner": name, "model": _short((cfg.get("model") or {}).get("_target_")),
            "data": (cfg.get("data_info") or {}).get("name", ""), "seed": cfg.get("seed", "")}


def summary_rows(run_dirs: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per run directory that has epoch metrics: its last epoch, best test accuracy and total time."""
    rows = []
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        epochs = read_csv(run_dir / "metrics.csv")
        if not epochs:
            continue
        last = epochs[-1]
        name = str(run_dir.relative_to(root)) if root is not None and run_dir.is_relative_to(root) else run_dir.name
        rows.append({
            "run": name, **{"learner": "", "model": "", "data": "", "seed": ""}, **_run_facts(run_dir),
            "epochs": last["epoch"], "steps": last["step"],
            **{k: last[k] for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")},
            "best_test_accuracy": repr(max(float(r["test_accuracy"]) for r in epochs)),
            "seconds": repr(sum(float(r["seconds"]) for r in epochs)),
        })
    return rows


def _plot(run_dirs: list[Path], names: dict[Path, str], out_png: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        log.warning("matplotlib is not installed; no sweep plot (pip install matplotlib).")
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for run_dir in run_dirs:
        epochs = read_csv(run_dir / "metrics.csv")
        ax.plot([int(r["epoch"]) for r in epochs], [100 * float(r["test_accuracy"]) for r in epochs], "-o",
                markersize=3, label=names[run_dir])
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"sweep {out_png.parent.name}: test accuracy per run")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png


def summarize(run_dirs: Iterable[str | os.PathLike], out_dir: str | os.PathLike, plot: bool = True) -> Path | None:
    """Write ``summary.csv`` (and ``summary.png``) for ``run_dirs`` into ``out_dir``; None if no run has metrics."""
    out_dir = Path(out_dir)
    run_dirs = [Path(d) for d in run_dirs]
    rows = summary_rows(run_dirs, root=out_dir)
    if not rows:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "summary.csv"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    if plot:
        with_metrics = [d for d in run_dirs if read_csv(d / "metrics.csv")]
        names = {d: str(d.relative_to(out_dir)) if d.is_relative_to(out_dir) else d.name for d in with_metrics}
        _plot(with_metrics, names, out_dir / "summary.png")
    return path


try:  # the callback needs Hydra; summarize() does not
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - depends on the environment
    Callback = object  # type: ignore[assignment,misc]


class SweepSummary(Callback):  # type: ignore[misc]
    """Hydra callback: after each job of a multirun and at its end, summarise the sweep's runs."""

    def __init__(self, plot: bool = True) -> None:
        self.plot = plot
        self.jobs: list[Path] = []

    @staticmethod
    def _is_multirun(config: Any) -> bool:
        return str(config.hydra.get("mode", "")).endswith("MULTIRUN")

    def on_job_end(self, config: Any, job_return: Any = None, **kwargs: Any) -> None:
        if not self._is_multirun(config):
            return
        output_dir = Path(str(config.hydra.runtime.output_dir))
        if output_dir not in self.jobs:
            self.jobs.append(output_dir)
        self._write(Path(str(config.hydra.sweep.dir)))

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not self.jobs:  # jobs ran in other processes (another launcher): read the sweep directory
            self.jobs = sorted(p.parent for p in sweep_dir.glob("**/metrics.csv"))
        path = self._write(sweep_dir)
        if path is not None:
            log.info("Sweep summary: %s", path)

    def _write(self, sweep_dir: Path) -> Path | None:
        try:
            return summarize(self.jobs, sweep_dir, plot=self.plot)
        except Exception as exc:  # a summary must never hide the runs' own results
            log.warning("Could not write the sweep summary in %s (%s: %s).", sweep_dir, type(exc).__name__, exc)
            return None
