"""Build a run from a composed config (data, model, learner, optimizer) and train it.

:func:`run` is what ``eqprop-train`` calls after Hydra has composed the config; tests and
notebooks can call it with a config from ``hydra.compose``. Every object is created by
``hydra.utils.instantiate`` from its ``_target_``, so a user-defined model, solver or learner
is one config file naming its class.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigurationError
from ..optim import param_groups
from .checkpoint import seed_everything
from .distributed import DistributedContext, init_distributed
from .loop import Trainer, TrainerConfig
from .options import check_run_options
from .rundir import run_lock

__all__ = ["run", "CONFIG_DIR", "config_dir"]

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def config_dir() -> Path:
    """The directory of eqprop's Hydra configs: ``$EQPROP_CONFIG_DIR`` or the repository's ``configs/``."""
    env = os.environ.get("EQPROP_CONFIG_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[3] / "configs"


CONFIG_DIR = config_dir()


def _device(name: str, ctx: DistributedContext) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigurationError("device=cuda was asked for but torch sees no CUDA device; use device=cpu.")
        return torch.device("cuda", ctx.local_rank)
    if name != "cpu":
        raise ConfigurationError(f"device must be auto, cpu or cuda, got {name!r}.")
    return torch.device("cpu")


def _fill_data_info(cfg: Any, splits: Any) -> None:
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.data_info = {
            "n_features": splits.n_features,
            "n_classes": splits.n_classes,
            "sequence_length": splits.sequence_length,
            "input_shape": list(splits.input_shape),
            "n_train": len(splits.train),
            "n_test": len(splits.test),
            "name": splits.name,
        }


def _trainer_config(options: dict[str, Any], seed: int) -> TrainerConfig:
    """The ``trainer:`` node as a :class:`TrainerConfig` (``backend`` is read by ``init_distributed``; the seed is top-level)."""
    options = {k: v for k, v in options.items() if k != "backend"}
    known = [f.name for f in fields(TrainerConfig) if f.name != "seed"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigurationError(f"Unknown trainer option {', '.join(unknown)}; the trainer takes {', '.join(known)} and backend.")
    return TrainerConfig(**options, seed=seed)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be true or false, got {value!r}.")
    return value


def _has_target(node: Any) -> bool:
    return node is not None and "_target_" in node


def run(cfg: Any, run_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train the run that ``cfg`` describes; returns the last epoch's metrics (and ``run_dir``).

    ``run_dir`` defaults to Hydra's output directory for this job.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig

        run_dir = HydraConfig.get().runtime.output_dir
    run_dir = Path(run_dir)
    # Every scalar option is checked before anything is built or written.
    if cfg.dtype not in _DTYPES:
        raise ConfigurationError(f"dtype must be one of {', '.join(_DTYPES)}, got {cfg.dtype!r}.")
    _trainer_config(OmegaConf.to_container(cfg.trainer, resolve=True), cfg.seed)
    check_run_options(cfg)
    resume, overwrite = _flag("resume", cfg.get("resume", False)), _flag("overwrite", cfg.get("overwrite", False))
    deterministic = _flag("deterministic", cfg.get("deterministic", True))
    if resume and overwrite:
        raise ConfigurationError("resume=true and overwrite=true contradict each other; pass one of them.")
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    ctx = init_distributed(cfg.trainer.get("backend", "auto"), cfg.device)
    device = _device(cfg.device, ctx)
    with run_lock(run_dir, enabled=ctx.is_main):  # held until the run ends: a second process is refused
        determinism = seed_everything(int(cfg.seed), deterministic)
        splits = instantiate(cfg.data)
        _fill_data_info(cfg, splits)
        model = instantiate(cfg.model).to(device=device, dtype=_DTYPES[cfg.dtype])
        learner = instantiate(cfg.learner)
        optimizer = instantiate(cfg.optim)(param_groups(model))  # binary latent weights apart
        scheduler = instantiate(cfg.scheduler)(optimizer) if _has_target(cfg.get("scheduler")) else None

        resolved = OmegaConf.to_container(cfg, resolve=True)
        trainer_cfg = _trainer_config(resolved["trainer"], int(cfg.seed))
        trainer = Trainer(model, learner, optimizer, splits.train, splits.test, run_dir, trainer_cfg,
                          scheduler=scheduler, dist=ctx, device=device, run_config=resolved, n_classes=splits.n_classes)
        trainer.prepare(resume=resume, overwrite=overwrite)  # checks the checkpoint (resume) or the directory first
        if ctx.is_main:
            (run_dir / "resolved_config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
            info = {**determinism, "world_size": ctx.world_size, "backend": ctx.backend, "device": str(device),
                    "dtype": cfg.dtype, "model": repr(model), "learner": repr(learner)}
            (run_dir / "run_info.json").write_text(json.dumps(info, indent=2))
            log.info("%s | %s | %s on %s (%d processes)", splits, type(model).__name__, learner, device, ctx.world_size)
        result = trainer.fit(resume=resume, overwrite=overwrite)
    ctx.close()  # under torchrun: leave the group once every rank has finished
    result["run_dir"] = str(run_dir)
    if ctx.is_main and not result.get("stopped") and "test_accuracy" in result:
        print(f"test accuracy: {100 * result['test_accuracy']:.2f}% (epoch {result['epoch']}/{trainer_cfg.epochs}, "
              f"{result['step']} steps; {run_dir})", flush=True)
    return result
