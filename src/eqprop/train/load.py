"""Rebuild a trained run from its directory: :func:`load_run`.

A run directory written by ``eqprop-train`` (or :func:`eqprop.train.run`) holds
``resolved_config.yaml`` (every setting, the data facts included) and ``checkpoint.pt`` (the
trained parameters, the learner's state and the metrics). :func:`load_run` builds the model
and learner from the first and fills them from the second, ready for ``predict``. The dataset
itself is not read unless asked for (:meth:`LoadedRun.load_data`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import CheckpointError, load_checkpoint

__all__ = ["LoadedRun", "load_run"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedRun:
    """A trained run: ``model`` (in eval mode) and ``learner`` as they were at the checkpoint.

    ``data_info`` holds the data facts the model was built from (``n_features``, ``n_classes``,
    ``input_shape``, ``name``, ...); ``history`` the per-epoch metrics; ``config`` the resolved
    config (an OmegaConf ``DictConfig``).
    """

    model: nn.Module
    learner: Any
    config: Any
    data_info: dict[str, Any]
    history: list[dict[str, Any]]
    run_dir: Path
    epoch: int
    step: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def predict(self, x: Tensor) -> Tensor:
        """``learner.predict(model, x)`` with ``x`` moved to the run's device and dtype."""
        x = torch.as_tensor(x)
        x = x.to(self.device, dtype=self.dtype if x.is_floating_point() else x.dtype)
        with torch.enable_grad():  # some learners relax by autograd on the state
            return self.learner.predict(self.model, x).detach()

    def load_data(self) -> Any:
        """The run's dataset (:class:`eqprop.data.Splits`), loaded again from its config."""
        from hydra.utils import instantiate

        return instantiate(self.config.data)


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the model and learner of the run in ``path`` from its resolved config and checkpoint.

    ``device`` is where the model is put (``"cpu"`` by default, whatever the run trained on).
    A directory without ``resolved_config.yaml`` or ``checkpoint.pt`` raises :class:`CheckpointError`.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    run_dir = Path(path).expanduser()
    config_path = run_dir / "resolved_config.yaml"
    if not config_path.exists():
        raise CheckpointError(f"{run_dir} has no resolved_config.yaml; pass the directory of a run that eqprop-train wrote.")
    cfg = OmegaConf.load(config_path)
    ckpt = load_checkpoint(run_dir / "checkpoint.pt", map_location="cpu")
    device = torch.device(device)
    dtype = _DTYPES.get(str(cfg.get("dtype", "float32")), torch.float32)
    model = instantiate(cfg.model).to(device=device, dtype=dtype)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"The checkpoint in {run_dir} does not fit the model of its resolved_config.yaml ({exc}); "
                              f"the two files come from different runs.") from None
    model.eval()
    learner = instantiate(cfg.learner)
    per_rank = ckpt.get("per_rank") or []
    if per_rank and hasattr(learner, "load_state_dict"):
        learner.load_state_dict(per_rank[0]["learner"])
    data_info = OmegaConf.to_container(cfg.data_info, resolve=True) if "data_info" in cfg else {}
    return LoadedRun(model=model, learner=learner, config=cfg, data_info=dict(data_info),
                     history=list(ckpt.get("history", [])), run_dir=run_dir, epoch=int(ckpt.get("epoch", 0)),
                     step=int(ckpt.get("step", 0)), device=device)
