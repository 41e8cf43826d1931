"""What a training produced: the per-step :class:`History` of one run, and the :class:`Run` record that keeps it
with what was trained (the model config, the training settings and seed) and, when asked, the trained network.

Every chapter's experiments return Runs (or plain rows made from them with :meth:`Run.row` for the stored sweeps);
:mod:`skipnet.train` fills them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
import torch.nn as nn

from skipnet.config import Config

__all__ = ["History", "Run"]


@dataclass
class History:
    """What a training run produced. Curves hold finite values only.

    loss / acc: per step, on the training batch. evals: dicts with ``step``, ``train_loss``,
    ``train_acc``, ``test_loss``, ``test_acc`` (full sets, eval mode). grad_norms: rows of per-layer
    gradient norms at ``grad_steps``. status: ``"finished"``, ``"stopped at step k"`` or
    ``"diverged at step k"`` (k counted from 1).
    """

    loss: list[float] = field(default_factory=list)
    acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    step_time: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    grad_steps: list[int] = field(default_factory=list)
    grad_norms: list[list[float]] = field(default_factory=list)
    layer_names: list[str] = field(default_factory=list)
    diverged_at: int | None = None
    stopped_at: int | None = None
    total_steps: int = 0

    @property
    def steps_done(self) -> int:
        return len(self.loss)

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def status(self) -> str:
        if self.diverged_at is not None:
            return f"diverged at step {self.diverged_at}"
        if self.stopped_at is not None:
            return f"stopped at step {self.stopped_at}"
        return "finished" if self.steps_done >= self.total_steps else "running"

    @property
    def final(self) -> dict:
        """The last full evaluation (empty if none, e.g. after an early divergence)."""
        return self.evals[-1] if self.evals else {}

    def as_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status
        return d


@dataclass
class Run:
    """One training: what was trained (its config, the training settings and seed), what came out
    (:class:`History`), how long it took, and the trained network when it was kept.

    ``label`` defaults to the model config's (``"residual-56"``); ``row()`` is the plain record stored
    in the precomputed sweeps.
    """

    model: Config
    train: Config                  # the :class:`~skipnet.train.TrainConfig` it was trained with
    history: History
    seconds: float
    net: nn.Module | None = None
    label: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.model.label

    @property
    def seed(self) -> int:
        return self.train.seed

    @property
    def status(self) -> str:
        return self.history.status

    @property
    def final(self) -> dict:
        return self.history.final

    def metric(self, name: str) -> float | None:
        """A value of the last evaluation (``train_loss``, ``test_acc``, ...), ``None`` if there was none."""
        return self.history.final.get(name)

    def curve(self, name: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of one evaluated quantity (``"test_acc"``, ``"rel_error"``, ...) along the run."""
        rows = [e for e in self.history.evals if name in e]
        return [e["step"] for e in rows], [e[name] for e in rows]

    @property
    def train_loss(self) -> float | None:
        return self.metric("train_loss")

    @property
    def train_acc(self) -> float | None:
        return self.metric("train_acc")

    @property
    def test_acc(self) -> float | None:
        return self.metric("test_acc")

    def row(self, *fields: str, curve_every: int = 0) -> dict:
        """``label``, the named fields of the model config, seed, status, final metrics (``None`` after an early
        divergence), any ``extra`` values and seconds; the per-step loss every ``curve_every`` steps if > 0."""
        f = self.history.final
        row = {"label": self.label, **{k: getattr(self.model, k) for k in fields}, "seed": self.seed,
               "status": self.status, "train_loss": f.get("train_loss"),
               "train_err": None if "train_acc" not in f else 1 - f["train_acc"],
               "test_err": None if "test_acc" not in f else 1 - f["test_acc"], **self.extra,
               "seconds": round(self.seconds, 2)}
        if curve_every:
            row["loss_curve"] = [round(v, 4) for v in self.history.loss[::curve_every]]
        return row
