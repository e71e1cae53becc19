"""The contract every learner and every baseline keeps.

    grads = learner.grads(model, x, y)   # {name: dL/dθ}, shaped like each parameter; no side effects
    out = learner.step(model, x, y)      # adds the same into p.grad (zero_grad() first); out.loss
    pred = learner.predict(model, x)     # model output at the free equilibrium / final state

The gradient is that of the loss, the batch mean of the per-sample cost, with torch's sign
convention: a ``torch.optim`` optimizer descends it. The base class validates the inputs
(template method): a subclass implements :meth:`Learner.estimate` and nothing else.

This module knows learners only; it never names a concrete model, solver or dataset.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..costs import Cost, SquaredError
from ..models._checks import all_finite, positive_int
from ..solvers.options import check_tol
from ..errors import ConfigurationError, EqpropError, NonFiniteError, ShapeError

__all__ = ["Estimate", "StepOutput", "Learner", "check_inputs", "check_beta", "check_cost", "check_parameters",
           "check_model_methods", "check_model_kind", "check_flag", "check_seed", "check_tol",
           "positive_int", "model_kind", "complete_grads", "all_finite", "settings"]


@dataclass
class Estimate:
    """What :meth:`Learner.estimate` returns.

    ``grads`` maps parameter names to dL/dθ; ``loss`` is the detached batch-mean loss of the
    free phase; ``prediction`` the free-phase output; ``info`` solver statuses and diagnostics.
    """

    grads: dict[str, Tensor]
    loss: Tensor
    prediction: Tensor
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepOutput:
    """What :meth:`Learner.step` returns: the loss, the prediction, and the gradient it wrote."""

    loss: Tensor
    prediction: Tensor
    grads: dict[str, Tensor]
    info: dict[str, Any] = field(default_factory=dict)


def check_beta(name: str, value: float) -> float:
    """A nudging strength must be a finite non-zero real number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a real number, got {value!r}.") from None
    if value == 0.0 or not torch.isfinite(torch.tensor(value)):
        raise ConfigurationError(
            f"{name} = {value} gives no gradient estimate; use a small finite non-zero value such as 0.1."
        )
    return value


def check_flag(name: str, value: Any) -> bool:
    """A switch must be True or False (a string such as 'false' is refused, not read as True)."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {value!r}.")
    return value


def check_seed(name: str, value: Any) -> int | None:
    """A random seed: None or an integer ≥ 0."""
    return None if value is None else positive_int(name, value, minimum=0)


def check_inputs(model: nn.Module, x: Tensor, y: Tensor | None) -> None:
    """Check an input (and a target) against the model before any simulation, one sentence each.

    Refused: a non-tensor, a tensor on the ``meta`` device or on another device than the model's
    parameters, fewer than two axes (a batch and features), an empty batch, an integer, boolean or
    complex input to a real model, NaN or infinity in the input, a dtype other than the
    parameters', and a target of another batch size or device. A non-finite parameter is named
    where its NaN surfaces (a relaxation's final state, the gradient, the prediction), so a
    healthy step pays no extra pass over the parameters.
    """
    if not isinstance(x, Tensor):
        raise ShapeError(f"The input must be a torch.Tensor, got {type(x).__name__}.")
    ref = _first_parameter(model)
    _check_device("input", x, ref)
    if x.dim() < 2 and model_kind(model) in ("hamiltonian", "lagrangian"):
        raise ShapeError(
            f"A sequence input must be shaped [batch, T, features], got {tuple(x.shape)}; add the missing axes "
            f"(x.unsqueeze(-1) for a scalar signal, x.unsqueeze(0) for one sequence)."
        )
    if x.dim() < 2:
        raise ShapeError(
            f"The input must be batch first with at least two axes, [batch, features...], got shape {tuple(x.shape)}; "
            f"use x.unsqueeze(0) for one sample or x.unsqueeze(-1) for one feature per sample."
        )
    if x.shape[0] == 0:
        raise ShapeError(f"The input batch is empty (shape {tuple(x.shape)}); pass at least one sample.")
    if not (x.is_floating_point() or x.is_complex()):
        want = ref.dtype if ref is not None and ref.is_floating_point() else torch.get_default_dtype()
        raise ShapeError(f"The input is {x.dtype}, but models take floating-point inputs; convert it with x.to({want}).")
    if x.is_complex() and ref is not None and not ref.is_complex():
        raise ShapeError(
            f"The input is complex ({x.dtype}) but the model is real ({ref.dtype}); pass a real input "
            f"(holomorphic EP makes its complex states itself)."
        )
    if not all_finite([x]):
        raise NonFiniteError("The input contains NaN or infinity; clean the data before training.")
    if ref is not None and x.dtype != ref.dtype and not x.is_complex():
        raise ShapeError(
            f"The input is {x.dtype} but the model's parameters are {ref.dtype}; convert one of them "
            f"(e.g. x.to({ref.dtype}) or model.to({x.dtype}))."
        )
    if y is not None:
        if not isinstance(y, Tensor):
            raise ShapeError(f"The target must be a torch.Tensor, got {type(y).__name__}.")
        _check_device("target", y, ref)
        if y.device != x.device:
            raise ShapeError(f"The target is on {y.device} but the input is on {x.device}; move it with y.to({str(x.device)!r}).")
        if y.dim() == 0 or y.shape[0] != x.shape[0]:
            got = "a scalar" if y.dim() == 0 else f"a batch of {y.shape[0]}"
            raise ShapeError(f"The target has {got} but the input has a batch of {x.shape[0]}; pass one target per sample.")
        if y.is_complex():
            raise ShapeError(f"The target is complex ({y.dtype}); pass real targets (class indices or real values).")


def check_parameters(model: nn.Module) -> None:
    """Every parameter finite (one reduction each, one sync); otherwise name the first that is not."""
    named = [(n, p) for n, p in model.named_parameters() if p.is_floating_point() or p.is_complex()]
    if named and not all_finite([p.detach() for _, p in named]):
        name = next(n for n, p in named if not bool(torch.isfinite(p.detach()).all()))
        raise NonFiniteError(
            f"The parameter {name} of {type(model).__name__} holds NaN or infinity; re-initialise it or reload a "
            f"checkpoint (a diverged update: lower the learning rate)."
        )


def _first_parameter(model: nn.Module) -> Tensor | None:
    for p in model.parameters():
        return p
    for b in model.buffers():
        return b
    return None


def _check_device(what: str, t: Tensor, ref: Tensor | None) -> None:
    if t.device.type == "meta" or (ref is not None and ref.device.type == "meta"):
        holder = f"The {what}" if t.device.type == "meta" else "The model"
        raise ShapeError(
            f"{holder} is on the meta device, which holds shapes but no values; create it on a real device "
            f"(e.g. model.to_empty(device='cpu') and then load or initialise the weights)."
        )
    if ref is not None and t.device != ref.device:
        raise ShapeError(
            f"The {what} is on {t.device} but the model is on {ref.device}; move one of them "
            f"(e.g. {'x' if what == 'input' else 'y'}.to({str(ref.device)!r}) or model.to({str(t.device)!r}))."
        )


def trainable(model: nn.Module) -> list[tuple[str, Tensor]]:
    """The (name, parameter) pairs that receive a gradient."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def complete_grads(model: nn.Module, grads: dict[str, Tensor], params: list | None = None) -> dict[str, Tensor]:
    """Every trainable parameter gets an entry (zeros where the estimator has no term)."""
    out: dict[str, Tensor] = {}
    for name, p in trainable(model) if params is None else params:
        g = grads.get(name)
        if g is None:
            g = torch.zeros_like(p)
        elif g.shape != p.shape:
            raise ShapeError(f"Gradient for {name} has shape {tuple(g.shape)}, expected {tuple(p.shape)}.")
        if g.requires_grad:
            g = g.detach()
        out[name] = g if g.dtype == p.dtype else g.to(p.dtype)
    return out


class Learner:
    """Base class of learners and baselines.

    Subclasses implement :meth:`estimate` and :meth:`predict` (and, for stateful learners,
    ``state_dict`` / ``load_state_dict``); the base class validates the inputs and the model's
    own methods once per call (also around a subclass's ``predict``), checks the cost, fills
    missing gradients with zeros, refuses non-finite ones and writes ``.grad``. Gradients need
    no caller's grad mode: ``grads`` and ``step`` work under ``torch.no_grad()`` and
    ``torch.inference_mode()``. ``repr`` lists every argument of ``__init__``.
    """

    #: The model families this learner trains (keys of ``MODEL_KINDS``; empty: any model).
    model_kinds: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "predict" in cls.__dict__:  # the template around every subclass's predict
            cls.predict = _checked_predict(cls.__dict__["predict"])

    @property
    def cost(self) -> Cost:
        """The cost of the loss (an :class:`eqprop.costs.Cost` instance, checked on assignment)."""
        try:
            return self.__dict__["_cost"]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no cost") from None

    @cost.setter
    def cost(self, value: Cost | None) -> None:
        self.__dict__["_cost"] = check_cost(type(self).__name__, value)

    def estimate(self, model: nn.Module, x: Tensor, y: Tensor) -> Estimate:  # pragma: no cover
        raise NotImplementedError

    def predict(self, model: nn.Module, x: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    # -- the contract -------------------------------------------------------------------------
    def grads(self, model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """dL/dθ for every trainable parameter, keyed as in ``model.named_parameters()``."""
        return self._run(model, x, y).grads

    def step(self, model: nn.Module, x: Tensor, y: Tensor) -> StepOutput:
        """Add dL/dθ into ``p.grad`` (as ``loss.backward()`` would) and return the loss.

        ``StepOutput.grads`` holds this call's gradient, never ``p.grad`` itself.
        """
        params: list = []
        est = self._run(model, x, y, params)
        for name, p in params:
            g = est.grads[name]
            if p.grad is None:
                p.grad = g.clone()  # a copy: out.grads must not change under the next step
            else:
                p.grad.add_(g)
        return StepOutput(loss=est.loss, prediction=est.prediction, grads=est.grads, info=est.info)

    def _run(self, model: nn.Module, x: Tensor, y: Tensor, params: list | None = None) -> Estimate:
        """Validate, estimate, complete; ``params`` (a list) is filled with the trainable pairs."""
        with torch.inference_mode(False), torch.enable_grad(), _Call(self):
            x, y = _usable(x), _usable(y)
            check_model_kind(self, model)
            check_inputs(model, x, y)
            pairs = trainable(model)
            check_model_methods(model, x)
            if pairs:
                with _named_cause(model):
                    est = self.estimate(model, x, y)
            else:  # nothing to learn: an empty gradient where the estimator copes, one sentence where not
                try:
                    est = self.estimate(model, x, y)
                except ConfigurationError:  # a setting to fix first (e.g. a missing step size)
                    raise
                except Exception:  # noqa: BLE001 - e.g. autograd.grad of no inputs, misread downstream
                    raise ConfigurationError(
                        f"{type(model).__name__} has no trainable parameters (none defined or all requires_grad=False), "
                        f"so {type(self).__name__} has nothing to estimate; give it an nn.Parameter or call "
                        f"requires_grad_(True) on the ones to learn."
                    ) from None
        if params is not None:
            params.extend(pairs)
        est.grads = complete_grads(model, est.grads, pairs)
        if not all_finite(list(est.grads.values())):
            check_parameters(model)  # a NaN parameter is the cause to name, not the gradient it spoiled
            name = next(n for n, g in est.grads.items() if not bool(torch.isfinite(g).all()))
            raise NonFiniteError(
                f"The gradient of {name} is not finite; the dynamics diverged — lower the step "
                f"size, β or the learning rate."
            )
        return est

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in settings(self).items())})"

    # -- state (random generators, running quantities) ----------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The learner's own state (e.g. a random generator), for exact checkpoint and resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ConfigurationError(f"{type(self).__name__} keeps no state, got keys {sorted(state)}.")


def settings(learner: Any) -> dict[str, Any]:
    """Every argument of ``type(learner).__init__`` with the value the learner holds for it
    (what ``repr`` prints and a run records); an argument the learner does not keep under its
    own name is reported as ``'?'`` (a test checks that no learner has one)."""
    out: dict[str, Any] = {}
    for name, param in inspect.signature(type(learner).__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        out[name] = getattr(learner, name, "?")
    return out


def check_cost(learner: str, cost: Any) -> Cost:
    """A learner's cost: ``None`` (squared error) or an :class:`eqprop.costs.Cost` instance."""
    if cost is None:
        return SquaredError()
    if isinstance(cost, type) and issubclass(cost, Cost):
        raise ConfigurationError(f"{learner} got the class {cost.__name__} as its cost; pass an instance, {cost.__name__}().")
    if not isinstance(cost, Cost):
        raise ConfigurationError(
            f"{learner}'s cost must be an eqprop.costs.Cost such as SquaredError() or CrossEntropy(), got {cost!r}."
        )
    return cost


#: The model families, each with the learners that train it (for one-sentence refusals).
MODEL_KINDS: dict[str, tuple[str, str]] = {
    "energy": ("a static energy model (eqprop.models.EnergyModel)",
               "EP, ContrastiveLearning, CoupledLearning, HolomorphicEP or ContinualEP (baselines: BPTT, ImplicitDifferentiation)"),
    "hamiltonian": ("a Hamiltonian sequence model (eqprop.models.HamiltonianModel, e.g. LinearHRU, HSSM)",
                    "RHEL, ContinuousRHEL or HEB (baselines: BPTT, Adjoint, FullDynamicsBPTT)"),
    "lagrangian": ("a Lagrangian model (eqprop.models.LagrangianModel)",
                   "GLEP (baselines: LagrangianImplicit, LagrangianBPTT)"),
    "ffebm": ("a feedforward-tied EBM (eqprop.models.FFEBM)", "ChainedEP (baseline: ChainedBackprop)"),
}


def model_kind(model: Any) -> str | None:
    """Which family a model belongs to, read from what it can do (None: none of eqprop's)."""
    if hasattr(model, "hamiltonian_layers") and hasattr(model, "init_states"):
        return "hamiltonian"
    if hasattr(model, "lagrangian") and hasattr(model, "initial_conditions"):
        return "lagrangian"
    if hasattr(model, "blocks") and hasattr(model, "block_input"):
        return "ffebm"
    if hasattr(model, "energy_grad") and hasattr(model, "param_grads") and hasattr(model, "init_state"):
        return "energy"
    return None


def check_model_kind(learner: Any, model: Any) -> None:
    """Refuse a model of a family the learner does not train, naming the learners that do."""
    kinds = getattr(learner, "model_kinds", ())
    if not kinds:
        return
    kind = model_kind(model)
    if kind in kinds:
        return
    who, wanted = type(learner).__name__, " or ".join(MODEL_KINDS[k][0] for k in kinds)
    if kind is None:
        raise ConfigurationError(
            f"{who} trains {wanted}, but {type(model).__name__} is none of eqprop's model kinds; subclass one of "
            f"eqprop.models.EnergyModel, HamiltonianModel or LagrangianModel."
        )
    raise ConfigurationError(
        f"{who} trains {wanted}, but {type(model).__name__} is {MODEL_KINDS[kind][0]}; train it with {MODEL_KINDS[kind][1]}."
    )


def check_model_methods(model: nn.Module, x: Tensor) -> None:
    """Run the model's own check of the methods its user wrote (``check_physics(x)``: shapes of
    init_state, energy, potential, kinetic, lagrangian), once per input shape, dtype and device."""
    check = getattr(model, "check_physics", None)
    if check is None:
        return
    key = (tuple(x.shape), x.dtype, x.device)
    seen = model.__dict__.setdefault("_eqprop_checked_inputs", set())
    if key in seen:
        return
    try:
        with torch.no_grad():
            check(x)
    except EqpropError:
        raise
    except Exception:  # noqa: BLE001 - e.g. an input of the wrong width: the learner's own check names it
        return
    seen.add(key)


class _named_cause:
    """A NonFiniteError raised inside a simulation is re-read against the whole model: a NaN
    parameter anywhere (e.g. a feedforward map feeding a block of an ff-EBM) is the cause named."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, trace: Any) -> bool:
        if kind is not None and issubclass(kind, NonFiniteError) and not str(error).startswith("The parameter "):
            check_parameters(self.model)
        return False


def _usable(t: Any) -> Any:
    """An inference-mode tensor cloned into a normal one (autograd may then record it)."""
    if isinstance(t, Tensor) and t.is_inference():
        return t.clone()
    return t


class _Call:
    """Marks a learner as inside a checked call, so nested predict/grads do not check twice."""

    def __init__(self, learner: Learner) -> None:
        self.learner = learner

    def __enter__(self) -> bool:
        outer = self.learner.__dict__.get("_in_call", False)
        self.outer = outer
        self.learner.__dict__["_in_call"] = True
        return outer

    def __exit__(self, *exc: Any) -> None:
        self.learner.__dict__["_in_call"] = self.outer


def _checked_predict(predict):
    @functools.wraps(predict)
    def checked(self, model, x, *args, **kwargs):
        if self.__dict__.get("_in_call", False):
            return predict(self, model, x, *args, **kwargs)
        with torch.inference_mode(False), _Call(self):
            x = _usable(x)
            check_model_kind(self, model)
            check_inputs(model, x, None)
            check_model_methods(model, x)
            with _named_cause(model):
                out = predict(self, model, x, *args, **kwargs)
        if isinstance(out, Tensor) and (out.is_floating_point() or out.is_complex()) and not all_finite([out]):
            check_parameters(model)
            raise NonFiniteError(
                f"{type(self).__name__}.predict produced NaN or infinity: the simulation diverged; lower the step size "
                f"or the learning rate, or check the model's energy for values outside its domain."
            )
        return out

    return checked
