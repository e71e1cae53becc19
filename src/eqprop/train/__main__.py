"""``eqprop-train`` / ``python -m eqprop.train``: the Hydra entry point.

    eqprop-train                                   # HopfieldMLP on digits, centered EP
    eqprop-train learner.beta=0.2 trainer.epochs=5 # any field, on the command line
    eqprop-train --multirun learner.variant=positive,negative,centered
    eqprop-train experiment=scaling_ep_mlp data.root=~/data/mnist
    torchrun --nproc_per_node=2 -m eqprop.train    # data parallel

The configs are read from the repository's ``configs/`` (an editable install finds it), or from
``$EQPROP_CONFIG_DIR``, or from ``--config-dir``.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


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

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
    def _main(cfg) -> float | None:
        result = run(cfg)
        return result.get("test_accuracy")

    _main()


if __name__ == "__main__":
    main()
