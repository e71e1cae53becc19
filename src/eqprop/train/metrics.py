"""Metrics of a run: CSV files, TensorBoard scalars (when tensorboard is installed) and a plot.

``steps.csv``: one row per optimizer step (step, epoch, loss, accuracy); ``metrics.csv``: one row
per epoch (train and test loss and accuracy, seconds); ``diagnostics.csv``: one row per step and
diagnostic a learner reports in its ``info`` (:data:`DIAGNOSTICS`: RHEL's, ContinuousRHEL's and
HEB's estimated round-off of the contrast and, with an ε = 0 copy, the echo's return error). Floats are written with ``repr`` so that
two runs can be compared bit for bit. On resume, rows after the checkpoint are dropped. The
files stay open for the run and are flushed at each epoch and checkpoint (:meth:`MetricsLogger.flush`),
not at every step.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["MetricsLogger", "plot_learning_curve", "curve_title", "read_csv", "diagnostics", "DIAGNOSTICS"]

log = logging.getLogger(__name__)

STEP_FIELDS = ["step", "epoch", "loss", "accuracy"]
EPOCH_FIELDS = ["epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds"]
DIAGNOSTIC_FIELDS = ["step", "name", "value"]
DIAGNOSTICS = ("roundoff", "echo_error")


def diagnostics(info: dict[str, Any]) -> dict[str, float]:
    """The numbers among a step's ``info`` that a training log keeps (:data:`DIAGNOSTICS`)."""
    return {k: float(info[k]) for k in DIAGNOSTICS if isinstance(info.get(k), (int, float)) and not isinstance(info[k], bool)}


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a CSV file as dictionaries (empty if the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _fmt(value: Any) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


class MetricsLogger:
    """Append step and epoch metrics to CSV files and TensorBoard; a no-op on non-main ranks."""

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True, tensorboard: bool = True,
                 resume_step: int | None = None, resume_epoch: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        self._files: list[Any] = []
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.steps_path = self.run_dir / "steps.csv"
        self.epochs_path = self.run_dir / "metrics.csv"
        self._steps = self._open(self.steps_path, STEP_FIELDS, "step", resume_step)
        self._epochs = self._open(self.epochs_path, EPOCH_FIELDS, "epoch", resume_epoch)
        self.diagnostics_path = self.run_dir / "diagnostics.csv"
        self._diagnostics = self._open(self.diagnostics_path, DIAGNOSTIC_FIELDS, "step", resume_step)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - depends on the environment
                log.warning("tensorboard is not installed; metrics go to CSV only (pip install tensorboard).")
            else:
                self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=resume_step)

    def _open(self, path: Path, fields: list[str], key: str, keep_up_to: int | None) -> csv.DictWriter:
        """Start the file afresh, keeping (on resume) only the rows with ``key`` ≤ ``keep_up_to``; keep it open."""
        rows = [] if keep_up_to is None else [r for r in read_csv(path) if int(r[key]) <= keep_up_to]
        fh = open(path, "w", newline="")
        self._files.append(fh)
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        return writer

    def log_step(self, step: int, epoch: int, loss: float, accuracy: float,
                 diagnostics: dict[str, float] | None = None) -> None:
        if not self.enabled:
            return
        self._steps.writerow({"step": step, "epoch": epoch, "loss": _fmt(loss), "accuracy": _fmt(accuracy)})
        for name, value in (diagnostics or {}).items():
            self._diagnostics.writerow({"step": step, "name": name, "value": _fmt(value)})
        if self.writer is not None:
            self.writer.add_scalar("train/step_loss", loss, step)
            self.writer.add_scalar("train/step_accuracy", accuracy, step)
            for name, value in (diagnostics or {}).items():
                self.writer.add_scalar(f"diagnostics/{name}", value, step)

    def log_epoch(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._epochs.writerow({k: _fmt(row[k]) for k in EPOCH_FIELDS})
        if self.writer is not None:
            for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
                split, name = key.split("_", 1)
                self.writer.add_scalar(f"{split}/{name}", row[key], row["epoch"])
        self.flush()

    def flush(self) -> None:
        """Put every row logged so far on disk (the trainer calls this before each checkpoint)."""
        for fh in self._files:
            fh.flush()
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        for fh in self._files:
            fh.close()
        self._files = []
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def curve_title(learner: Any, model: Any, history: list[dict[str, Any]], name: str | None = None) -> str:
    """A learning curve's title: learner (and variant), model, final test accuracy, after the run's name."""
    parts = [type(learner).__name__]
    variant = getattr(learner, "variant", None)
    if isinstance(variant, str):
        parts[0] += f" ({variant})"
    parts.append(type(model).__name__)
    if history and math.isfinite(history[-1].get("test_accuracy", math.nan)):
        last = history[-1]
        parts.append(f"test accuracy {100 * last['test_accuracy']:.2f}% after {last['epoch']} epochs")
    return (f"{name}: " if name else "") + " · ".join(parts)


def plot_learning_curve(metrics_csv: str | os.PathLike, out_png: str | os.PathLike, title: str = "") -> Path | None:
    """Plot loss and accuracy per epoch (train and test) from ``metrics.csv`` into a PNG."""
    rows = read_csv(metrics_csv)
    if not rows:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        log.warning("matplotlib is not installed; no learning-curve plot (pip install matplotlib).")
        return None
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    for split, style in (("train", "-o"), ("test", "-s")):
        ax_loss.plot(epochs, [float(r[f"{split}_loss"]) for r in rows], style, label=split, markersize=3)
        ax_acc.plot(epochs, [100 * float(r[f"{split}_accuracy"]) for r in rows], style, label=split, markersize=3)
    positive = all(float(r[f"{split}_loss"]) > 0 for r in rows for split in ("train", "test"))
    ax_loss.set(xlabel="epoch", ylabel="loss", yscale="log" if positive else "linear")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers, from 1
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
