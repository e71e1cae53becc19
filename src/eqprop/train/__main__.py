"""``eqprop-train`` / ``python -m eqprop.train``: the Hydra entry point.

    eqprop-train                                   # HopfieldMLP on digits, centered EP
    eqprop-train learner.beta=0.2 trainer.epochs=5 # any field, on the command line
    eqprop-train --multirun learner.variant=positive,negative,centered
    eqprop-train experiment=scaling_ep_mlp data.root=~/data/mnist
    torchrun --nproc_per_node=2 -m eqprop.train    # data parallel

The configs are read from the repository's ``configs/`` (an editable install finds it), or from
``$EQPROP_CONFIG_DIR``, or from ``--config-dir``.

An eqprop error (a bad option, a dataset file of the wrong shape, a run directory in use) is
printed as its one sentence, without a traceback, and the exit status is 1;
``HYDRA_FULL_ERROR=1`` shows the full traceback instead.
"""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def _eqprop_error(exc: BaseException) -> BaseException | None:
    """The eqprop error behind ``exc`` (Hydra wraps errors raised while instantiating), or None."""
    from ..errors import EqpropError

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, EqpropError):
            return exc
        exc, seen = exc.__cause__, seen + 1
    return None


def main() -> None:
    """Console entry point: compose the config with Hydra and run it."""
    try:
        import hydra
    except ImportError:  # pragma: no cover - depends on the environment
        sys.exit("eqprop-train needs Hydra; install the training extras with `pip install eqprop[train]`.")
    from .app import CONFIG_DIR, run

    if not CONFIG_DIR.is_dir() and not any(a.startswith(("--config-dir", "-cd")) for a in sys.argv):
        sys.exit(f"eqprop-train found no configs at {CONFIG_DIR}; install eqprop editable (pip install -e .), "
                 f"set EQPROP_CONFIG_DIR, or pass --config-dir.")

    from hydra.errors import CompactHydraException

    class RunError(CompactHydraException):
        """eqprop's one-sentence error, which Hydra prints without a traceback."""

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
    def _main(cfg) -> float | None:
        try:
            result = run(cfg)
        except Exception as exc:
            own = _eqprop_error(exc)
            if own is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            raise RunError(f"{type(own).__name__}: {own}") from exc
        return result.get("test_accuracy")

    _main()


if __name__ == "__main__":
    main()
