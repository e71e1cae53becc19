"""eqprop's training layer: one loop, checkpoints, metrics, data parallel, and the Hydra entry point.

``Trainer`` runs any learner with any torch optimizer; ``run(cfg)`` builds a run from a Hydra
config; ``python -m eqprop.train`` / ``eqprop-train`` is the command line. Only this package (and
its ``__main__``) use Hydra; the core never imports it.
"""

from .checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state
from .distributed import DistributedContext, all_reduce_gradients, init_distributed
from .load import LoadedRun, load_run
from .loop import Trainer, TrainerConfig, accuracy_count
from .metrics import MetricsLogger, plot_learning_curve, read_csv
from .rundir import RunDirectoryError, check_fresh_start, run_lock

__all__ = [
    "Trainer", "TrainerConfig", "accuracy_count", "run",
    "save_checkpoint", "load_checkpoint", "CheckpointError", "seed_everything", "rng_state", "set_rng_state",
    "DistributedContext", "init_distributed", "all_reduce_gradients",
    "MetricsLogger", "plot_learning_curve", "read_csv",
    "load_run", "LoadedRun", "RunDirectoryError", "run_lock", "check_fresh_start", "summarize",
]


def run(cfg, run_dir=None):  # noqa: D103 - documented in app.run; imported lazily so Hydra stays optional
    from .app import run as _run

    return _run(cfg, run_dir)


run.__doc__ = "Train the run a composed Hydra config describes (see :func:`eqprop.train.app.run`)."


def summarize(run_dirs, out_dir, plot=True):  # noqa: D103 - documented in summary.summarize; lazy like run
    from .summary import summarize as _summarize

    return _summarize(run_dirs, out_dir, plot)


summarize.__doc__ = "Write summary.csv (and summary.png) over run directories (see :func:`eqprop.train.summary.summarize`)."
