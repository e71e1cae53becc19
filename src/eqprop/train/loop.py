"""The one training loop of eqprop: any model, any learner, any torch optimizer.

Per step: ``optimizer.zero_grad()``, ``learner.step(model, x, y)`` (which writes dL/dθ into
``p.grad``), the all-reduce of the gradients across processes, ``optimizer.step()``. Per epoch:
evaluation with ``learner.predict``, a CSV row, TensorBoard scalars, a checkpoint. The data
order of epoch e is a function of (seed, e) alone, so a resumed run skips the batches already
done and continues bit for bit.

This module knows the learner contract and torch; it never imports Hydra.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils.data import DistributedSampler, TensorDataset

from ..errors import ConfigurationError, NonFiniteError
from .checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import DistributedContext, all_gather_object, all_reduce_gradients, all_reduce_sum, broadcast_parameters
from .metrics import MetricsLogger, curve_title, diagnostics, plot_learning_curve
from .options import check_label_range, integer
from .rundir import check_fresh_start, run_lock

__all__ = ["Trainer", "TrainerConfig", "accuracy_count"]

log = logging.getLogger(__name__)


@dataclass
class TrainerConfig:
    """Options of :class:`Trainer` (the ``trainer:`` node of the Hydra config).

    ``batch_size`` is the *global* batch: with N processes each takes ``batch_size / N`` samples
    per step. ``max_steps`` stops the run after that many optimizer steps in total (with a
    checkpoint) — a budget, or a simulated kill. ``checkpoint_every``: also checkpoint every that
    many steps (0: at the end of each epoch only). ``target``: ``"auto"`` follows the cost's declared
    ``target_encoding`` (one-hot for :class:`~eqprop.costs.SquaredError`, indices for
    :class:`~eqprop.costs.CrossEntropy`); ``"onehot"`` or ``"index"`` force one.
    """

    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 1000
    max_steps: int | None = None
    checkpoint_every: int = 0
    drop_last: bool = False
    progress: bool = True
    tensorboard: bool = True
    plot: bool = True
    target: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            setattr(self, name, integer(f"trainer.{name}", getattr(self, name), minimum=1))
        self.max_steps = integer("trainer.max_steps", self.max_steps, minimum=1, allow_none=True)
        self.checkpoint_every = integer("trainer.checkpoint_every", self.checkpoint_every, minimum=0)
        self.seed = integer("seed", self.seed)
        for name in ("drop_last", "progress", "tensorboard", "plot"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(f"trainer.{name} must be true or false, got {getattr(self, name)!r}.")
        if self.target not in ("auto", "onehot", "index"):
            raise ConfigurationError(f"trainer.target must be auto, onehot or index, got {self.target!r}.")


def _last_step(prediction: Tensor, labels: Tensor) -> Tensor:
    """A sequence model's outputs at every step ``[B, T, C]`` against one label per sequence: the last step."""
    return prediction[:, -1] if prediction.dim() == 3 and labels.dim() == 1 else prediction


def _correct(prediction: Tensor, labels: Tensor) -> Tensor:
    prediction = _last_step(prediction, labels)
    return (prediction.reshape(labels.shape[0], -1).argmax(dim=-1) == labels).sum()


def accuracy_count(prediction: Tensor, labels: Tensor) -> int:
    """Correct argmax predictions; a sequence prediction ``[B, T, C]`` is read at its last step."""
    return int(_correct(prediction, labels))


def _batch_totals(loss: Tensor | None, prediction: Tensor, labels: Tensor) -> Tensor:
    """[samples, loss sum, correct] of one batch, float64 on the batch's device (no host sync)."""
    n = len(labels)
    loss_sum = loss.detach().to(torch.float64) * n if loss is not None else torch.zeros((), dtype=torch.float64, device=labels.device)
    return torch.stack([torch.full((), n, dtype=torch.float64, device=labels.device), loss_sum.to(labels.device),
                        _correct(prediction, labels).to(torch.float64)])


class Trainer:
    """Train ``model`` with ``learner`` and ``optimizer`` on ``train``; evaluate on ``test``.

    Writes into ``run_dir``: ``checkpoint.pt`` (latest, atomic), ``steps.csv``, ``metrics.csv``,
    ``tensorboard/`` and ``learning_curve.png`` (main process only).
    """

    def __init__(
        self,
        model: nn.Module,
        learner: Any,
        optimizer: torch.optim.Optimizer,
        train: TensorDataset,
        test: TensorDataset,
        run_dir: str | Path,
        config: TrainerConfig | None = None,
        scheduler: Any = None,
        dist: DistributedContext | None = None,
        device: torch.device | str = "cpu",
        run_config: dict[str, Any] | None = None,
        on_step: Callable[[int], None] | None = None,
        n_classes: int | None = None,
    ) -> None:
        self.model, self.learner, self.optimizer, self.scheduler = model, learner, optimizer, scheduler
        self.train_set, self.test_set = train, test
        self.run_dir = Path(run_dir)
        self.cfg = config or TrainerConfig()
        self.dist = dist or DistributedContext()
        self.device = torch.device(device)
        self.run_config = run_config or {}
        self.on_step = on_step
        self.dtype = next(model.parameters()).dtype
        if self.cfg.batch_size % self.dist.world_size:
            raise ConfigurationError(
                f"trainer.batch_size={self.cfg.batch_size} is the global batch and must divide evenly among "
                f"{self.dist.world_size} processes."
            )
        self.local_batch = self.cfg.batch_size // self.dist.world_size
        self.sampler = DistributedSampler(train, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                          shuffle=True, seed=self.cfg.seed, drop_last=True)
        self._declared_classes = None if n_classes is None else integer("n_classes", n_classes, minimum=1)
        if self._declared_classes is not None:
            check_label_range(train.tensors[1], test.tensors[1], self._declared_classes)
        self._check_steps_per_epoch()
        self._prepared: bool | None = None  # resume flag of the prepared run, None before prepare()
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        self.history: list[dict[str, Any]] = []
        self._epoch_totals = [0.0, 0.0, 0.0]  # samples, loss sum, correct, over this epoch so far
        self._epoch_seconds = 0.0  # time spent in this epoch before the last resume
        self._epoch_start = time.perf_counter()
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        self._logger: MetricsLogger | None = None  # open during fit(); flushed with each checkpoint
        broadcast_parameters(model, self.dist)

    # -- data ----------------------------------------------------------------------------------
    def _target(self, labels: Tensor, n_out: int | None = None) -> Tensor:
        mode = self.cfg.target
        if mode == "auto":
            encoding = getattr(getattr(self.learner, "cost", None), "target_encoding", "index")
            mode = "onehot" if encoding == "one_hot" else "index"
        if mode == "onehot" and not labels.is_floating_point():
            return torch.nn.functional.one_hot(labels, n_out or self.n_classes).to(self.dtype)
        return labels

    @cached_property
    def n_classes(self) -> int:
        """The dataset's declared class count (``n_classes=``), else the largest label + 1."""
        if self._declared_classes is not None:
            return self._declared_classes
        labels = self.train_set.tensors[1]
        return int(max(labels.max(), self.test_set.tensors[1].max())) + 1

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch: this process's share of the data in batches of ``local_batch``."""
        per_rank = len(self.sampler)
        return per_rank // self.local_batch if self.cfg.drop_last else -(-per_rank // self.local_batch)

    def _check_steps_per_epoch(self) -> None:
        if len(self.train_set) == 0:
            raise ConfigurationError("The training set is empty; check data.limit_train and the dataset files.")
        if self.steps_per_epoch == 0:
            raise ConfigurationError(
                f"trainer.batch_size={self.cfg.batch_size} is larger than the {len(self.train_set)} training samples "
                f"and trainer.drop_last=true drops that one short batch, so an epoch would make no step; lower "
                f"trainer.batch_size or set trainer.drop_last=false."
            )
        if len(self.test_set) == 0:
            raise ConfigurationError("The test set is empty; check data.limit_test and the dataset files.")

    def _batches(self, epoch: int) -> list[Tensor]:
        self.sampler.set_epoch(epoch)
        indices = torch.tensor(list(iter(self.sampler)), dtype=torch.long)
        chunks = list(torch.split(indices, self.local_batch))
        if chunks and (self.cfg.drop_last and len(chunks[-1]) < self.local_batch):
            chunks = chunks[:-1]
        return chunks

    def _to_device(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        x = x.to(self.device, dtype=self.dtype if x.is_floating_point() else x.dtype)
        return x, y.to(self.device)

    # -- the loop ------------------------------------------------------------------------------
    def prepare(self, resume: bool = False, overwrite: bool = False) -> None:
        """Check the run directory before anything is written: load the checkpoint (``resume``), or refuse
        to start over an earlier run unless ``overwrite`` (then its outputs are removed).

        :meth:`fit` calls it; call it first yourself to validate a resume before writing other files.
        """
        if self._prepared is not None:
            if self._prepared != bool(resume):
                raise ConfigurationError("prepare() and fit() were called with different resume flags; pass the same.")
            return
        if resume:
            self.load(self.checkpoint_path)
            if self.epoch > self.cfg.epochs:
                raise ConfigurationError(
                    f"The run has done {self.epoch} epochs already, more than trainer.epochs={self.cfg.epochs}; resume "
                    f"with trainer.epochs ≥ {self.epoch}, or load it with eqprop.train.load_run to use it as it is."
                )
        elif self.dist.is_main:
            check_fresh_start(self.run_dir, overwrite)
        self._prepared = bool(resume)

    def fit(self, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
        """Train up to ``config.epochs`` (or ``max_steps``); return the last epoch's metrics.

        The run directory is locked for the duration (a second process is refused). Without
        ``resume`` a directory that holds an earlier run is refused unless ``overwrite``.
        """
        with run_lock(self.run_dir, enabled=self.dist.is_main):
            return self._fit(resume, overwrite)

    def _fit(self, resume: bool, overwrite: bool) -> dict[str, Any]:
        self.prepare(resume, overwrite)
        self._logger = logger = MetricsLogger(self.run_dir, enabled=self.dist.is_main, tensorboard=self.cfg.tensorboard,
                                              resume_step=self.step if resume else None,
                                              resume_epoch=self.epoch if resume else None)
        stopped = self.cfg.max_steps is not None and self.step >= self.cfg.max_steps
        if stopped and self.dist.is_main:  # a resumed run already at its budget makes no further step
            log.info("Already at step %d = trainer.max_steps; raise it (or drop it) to train on.", self.step)
        try:
            while self.epoch < self.cfg.epochs and not stopped:
                stopped = self._train_epoch(logger)
        finally:
            logger.close()
            self._logger = None
        if self.dist.is_main and self.cfg.plot and not stopped:
            plot_learning_curve(self.run_dir / "metrics.csv", self.run_dir / "learning_curve.png", title=self._title())
        last = dict(self.history[-1]) if self.history else {}
        last["stopped"] = stopped
        last["step"] = self.step
        return last

    def _train_epoch(self, logger: MetricsLogger) -> bool:
        batches = self._batches(self.epoch)
        x_all, y_all = self.train_set.tensors
        totals = self._epoch_totals
        self._epoch_start = time.perf_counter()
        bar = self._progress(len(batches))
        bar.update(self.batch_in_epoch)
        self.model.train()
        for b in range(self.batch_in_epoch, len(batches)):
            x, labels = self._to_device(x_all[batches[b]], y_all[batches[b]])
            self.optimizer.zero_grad(set_to_none=True)
            out = self.learner.step(self.model, x, self._target(labels))
            all_reduce_gradients(self.model, self.dist)
            self.optimizer.step()
            # One read-back per step: the batch's totals, summed over the processes.
            n, loss_sum, correct = all_reduce_sum(_batch_totals(out.loss, out.prediction, labels), self.dist)
            if not math.isfinite(loss_sum):  # raised before any save: the checkpoint on disk stays the last good one
                raise NonFiniteError(
                    f"Training diverged at step {self.step + 1} (epoch {self.epoch + 1}): the batch loss is {loss_sum / n}; "
                    f"the last checkpoint is kept; lower optim.lr (or learner.beta), or try dtype=float64, and start again "
                    f"with overwrite=true."
                )
            totals[0] += n
            totals[1] += loss_sum
            totals[2] += correct
            self.step += 1
            self.batch_in_epoch = b + 1
            logger.log_step(self.step, self.epoch + 1, loss_sum / n, correct / n, diagnostics(out.info))
            bar.set_postfix(loss=f"{loss_sum / n:.4f}", acc=f"{correct / n:.3f}")
            bar.update(1)
            if self.on_step is not None:
                self.on_step(self.step)
            if self.cfg.max_steps is not None and self.step >= self.cfg.max_steps:
                bar.close()
                self.save()
                log.info("Stopped at step %d (trainer.max_steps); resume=true continues from here.", self.step)
                return True
            if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                self.save()
        bar.close()
        self._end_epoch(logger, time.perf_counter() - self._epoch_start)
        return False

    def _end_epoch(self, logger: MetricsLogger, seconds: float) -> None:
        test_loss, test_acc = self.evaluate(self.test_set)
        n, loss_sum, correct = self._epoch_totals
        row = {"epoch": self.epoch + 1, "step": self.step, "train_loss": loss_sum / max(n, 1),
               "train_accuracy": correct / max(n, 1), "test_loss": test_loss, "test_accuracy": test_acc,
               "seconds": self._epoch_seconds + seconds}
        self.history.append(row)
        logger.log_epoch(row)
        if self.dist.is_main:
            log.info("epoch %d/%d: train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% | %.1f s", row["epoch"],
                     self.cfg.epochs, row["train_loss"], 100 * row["train_accuracy"], test_loss, 100 * test_acc, row["seconds"])
        if self.scheduler is not None:
            self.scheduler.step()
        self.epoch += 1
        self.batch_in_epoch = 0
        self._epoch_totals = [0.0, 0.0, 0.0]
        self._epoch_seconds = 0.0
        self.save()

    def _progress(self, total: int):
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - depends on the environment
            tqdm = None
        enabled = self.cfg.progress and self.dist.is_main and tqdm is not None
        if not enabled:
            return _NoBar()
        # disable=None is tqdm's own non-tty rule: no bar when stderr is a file or a pipe (a log then
        # gets the one line per epoch that _end_epoch writes).
        return tqdm(total=total, desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}", unit="step", leave=False,
                    dynamic_ncols=True, mininterval=0.1, disable=None)

    def _title(self) -> str:
        return curve_title(self.learner, self.model, self.history, self.run_config.get("name"))

    @torch.no_grad()
    def evaluate(self, dataset: TensorDataset) -> tuple[float, float]:
        """(mean loss, accuracy) of ``learner.predict`` on ``dataset``, shared among the processes."""
        self.model.eval()
        x_all, y_all = dataset.tensors
        mine = torch.arange(self.dist.rank, len(y_all), self.dist.world_size)
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)
        cost = getattr(self.learner, "cost", None)
        for idx in torch.split(mine, self.cfg.eval_batch_size):
            x, labels = self._to_device(x_all[idx], y_all[idx])
            with torch.enable_grad():  # some learners relax by autograd on the state
                prediction = _last_step(self.learner.predict(self.model, x), labels)
            loss = cost.loss(prediction, self._target(labels, prediction.shape[-1])) if cost is not None else None
            totals += _batch_totals(loss, prediction, labels)
        n, loss_sum, correct = all_reduce_sum(totals, self.dist)
        return (loss_sum / n if cost is not None else math.nan), correct / max(n, 1)

    # -- checkpoints ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs; RNG and learner states are gathered from every rank."""
        per_rank = all_gather_object({"rng": rng_state(), "learner": self.learner.state_dict()}, self.dist)
        return {
            "format": 1,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "per_rank": per_rank,
            "world_size": self.dist.world_size,
            "data_seed": self.sampler.seed,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "epoch_totals": list(self._epoch_totals),
            "epoch_seconds": self._epoch_seconds + (time.perf_counter() - self._epoch_start if self.batch_in_epoch else 0.0),
            "history": list(self.history),
            "config": self.run_config,
        }

    def save(self) -> None:
        for name, p in self.model.named_parameters():  # never checkpoint a diverged model over a good one
            if not bool(torch.isfinite(p).all()):
                raise NonFiniteError(
                    f"Parameter {name!r} holds NaN or infinity at step {self.step} (epoch {self.epoch + 1}); the last "
                    f"checkpoint is kept; lower optim.lr (or learner.beta), or try dtype=float64, and start again with "
                    f"overwrite=true."
                )
        state = self.state()
        if self.dist.is_main:
            if self._logger is not None:
                self._logger.flush()  # the metrics files hold every row up to the checkpoint
            save_checkpoint(self.checkpoint_path, state)

    def load(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save` (same world size; compatible config).

        Read onto the CPU: generator states must be CPU byte tensors, and ``load_state_dict``
        copies the model's and optimizer's tensors onto their parameters' device.
        """
        ckpt = load_checkpoint(path, map_location="cpu")
        if ckpt.get("world_size") != self.dist.world_size:
            raise CheckpointError(
                f"{path} was written by {ckpt.get('world_size')} processes but this run has {self.dist.world_size}; "
                f"resume with the same number of processes."
            )
        self._check_config(ckpt.get("config") or {})
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        mine = ckpt["per_rank"][self.dist.rank]
        self.learner.load_state_dict(mine["learner"])
        set_rng_state(mine["rng"])
        self.epoch, self.batch_in_epoch, self.step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]
        self.sampler.seed = int(ckpt["data_seed"])  # the data order of every epoch follows from it
        self._epoch_totals = list(ckpt["epoch_totals"])
        self._epoch_seconds = float(ckpt.get("epoch_seconds", 0.0))
        self.history = list(ckpt["history"])
        if self.dist.is_main:
            log.info("Resumed from %s at epoch %d, step %d.", path, self.epoch, self.step)

    def _check_config(self, saved: dict[str, Any]) -> None:
        for key in ("model", "learner", "solver", "data", "optim", "seed"):
            if key in saved and key in self.run_config and saved[key] != self.run_config[key]:
                raise CheckpointError(
                    f"The checkpoint was written with a different '{key}' config ({saved[key]} vs "
                    f"{self.run_config[key]}); resume with the original settings or start a new run."
                )
        if "trainer" in saved and "trainer" in self.run_config:
            old, new = saved["trainer"].get("batch_size"), self.run_config["trainer"].get("batch_size")
            if old != new:
                raise CheckpointError(f"The checkpoint used trainer.batch_size={old}, this run {new}; resume with {old}.")


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

