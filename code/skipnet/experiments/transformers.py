"""Residual connections in a tiny Transformer: rank collapse at init, training on the sorting task,
warm-up and norm placement, gradient norms at init, and the path decomposition.

Chapter: *Residual connections in Transformers (and the RNN question)*. Pure functions of
(config, seed) returning plain data; no plotting, no I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch

from skipnet.history import Run
from skipnet.probes.gradients import layer_grad_norms
from skipnet.probes.rank import path_terms, stream_ratios, token_residual_ratio
from skipnet.runtime import eval_mode, generator
from skipnet.train import Progress, TrainConfig, train_run
from skipnet.transformer import SortTask, TransformerConfig

__all__ = ["SORT", "SORT_MODEL", "DEFAULT_TRAIN", "VARIANTS", "WARMUP_LR", "WARMUP_BLOCKS", "WARMUP_STEPS",
           "variant_config", "train_sort", "sort_row", "stuck", "RankCurves", "rank_collapse",
           "RANK_VARIANTS", "rank_variant_config", "FLOAT64_FLOOR", "loglog_increments", "GradProfile", "grad_norms_at_init", "PathProfile",
           "path_profile", "final_collapse", "NORESID_LRS", "NORESID_BLOCKS", "NORESID_LONG", "collapse_row",
           "collapse_at_init", "EQUIV_MARGIN", "chapter_family", "confirmation_seeds"]

SORT = SortTask(seq_len=12, vocab=16)
SORT_MODEL = TransformerConfig(n_blocks=6, width=64, heads=4, ffn=256, placement="pre", vocab=16, seq_len=12)
DEFAULT_TRAIN = TrainConfig(lr=3e-3, optimizer="adamw", betas=(0.9, 0.98), weight_decay=0.0, batch_size=64,
                            steps=300, warmup_steps=30, schedule="cosine", grad_clip=1.0)
WARMUP_BLOCKS, WARMUP_LR, WARMUP_STEPS = 8, 1e-2, 100    # the high-lr setting where post-LN needs warm-up

# The three networks the chapter compares. "no residual" keeps LayerNorm between sublayers.
VARIANTS = {
    "no residual": dict(residual=False, placement="post"),
    "post-LN": dict(residual=True, placement="post"),
    "pre-LN": dict(residual=True, placement="pre"),
}


def variant_config(name: str, n_blocks: int, base: TransformerConfig = SORT_MODEL) -> TransformerConfig:
    """The model of a named variant (a key of :data:`VARIANTS`) with ``n_blocks`` blocks."""
    if name not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(map(repr, VARIANTS))}; got {name!r}")
    return base.with_(n_blocks=n_blocks, **VARIANTS[name])


def stuck(loss: float | None, task: SortTask = SORT) -> bool:
    """A run is stuck when it ends (or diverges) without beating the position-only predictor by a
    clear margin: final loss above the halfway point between that predictor and zero."""
    return loss is None or not math.isfinite(loss) or loss > 0.5 * task.position_only_loss()


def train_sort(model: TransformerConfig = SORT_MODEL, train: TrainConfig = DEFAULT_TRAIN, seed: int = 0,
               label: str = "", task: SortTask = SORT, progress: Progress | None = None) -> Run:
    """Train one encoder on the sorting task (a fresh batch every step); return the :class:`~skipnet.history.Run`."""
    return train_run(model, task, train, seed, label, progress)


def sort_row(run: Run, curve_every: int = 5) -> dict:
    """The stored record of one sorting run: label, blocks, skip, placement, lr, warm-up, seed, status, the final
    loss and accuracy (on a fixed fresh batch), whether it is :func:`stuck`, seconds, and the loss curve."""
    m, t = run.model, run.train
    return {"label": run.label, "n_blocks": m.n_blocks, "residual": m.residual, "placement": m.placement, "lr": t.lr,
            "warmup_steps": t.warmup_steps, "seed": run.seed, "status": run.status, "train_loss": run.train_loss,
            "train_acc": run.train_acc, "stuck": run.history.diverged or stuck(run.train_loss),
            "seconds": round(run.seconds, 2), "loss_curve": [round(v, 4) for v in run.history.loss[::curve_every]],
            "curve_every": curve_every}


@torch.no_grad()
def final_collapse(net, task: SortTask = SORT, n_seq: int = 256, seed: int = 5, float64: bool = False) -> dict:
    """How collapsed a trained encoder's stream is on fresh sorting inputs: the token residual ratio r before the
    blocks and after each block, and the spread of its predictions across positions (mean L1 distance between each
    position's predicted distribution and the sequence's mean prediction: 0 for a token-uniform predictor).
    ``float64=True`` converts ``net`` to double precision in place first (round-off near 1e-16, not 1e-7)."""
    if float64:
        net = net.double()
    X, _ = task.sample(n_seq, generator(seed))
    with eval_mode(net):
        ratios = stream_ratios(net, net.embed(X))
        p = net(X).double().softmax(-1)                                   # (B, T, V)
    spread = (p - p.mean(dim=1, keepdim=True)).abs().sum(-1).mean().item()
    return {"r_blocks": [float(v) for v in ratios], "r_final": float(ratios[-1]), "position_spread": spread}



# -- the no-residual encoder: stuck at every lr? (the chapter sweeps its lr before saying the skip is what lets it be deep)
NORESID_BLOCKS = 6
NORESID_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
NORESID_LONG = 5                  # the best lr is also trained for 5x the steps


def collapse_row(run: Run, curve_every: int = 5, task: SortTask = SORT) -> dict:
    """:func:`sort_row` plus the number of steps and the trained stream's collapse (:func:`final_collapse`)."""
    return {**sort_row(run, curve_every), "steps": run.train.steps, **final_collapse(run.net, task)}


# -- rank collapse at initialization -------------------------------------------------------------
# The eight switches of the rank-collapse explorer: skip, LayerNorm (pre-LN placement), MLP.
RANK_VARIANTS = [(skip, ln, mlp) for skip in (False, True) for ln in (False, True) for mlp in (False, True)]


def rank_variant_config(n_blocks: int, skip: bool, ln: bool, mlp: bool, width: int = 64, heads: int = 4,
                        seq_len: int = 32, init: str = "depth") -> TransformerConfig:
    """The encoder of one explorer setting: skip on/off, LayerNorm (pre-LN placement) on/off, MLP on/off."""
    return TransformerConfig(n_blocks=n_blocks, width=width, heads=heads, ffn=4 * width, residual=skip,
                             norm="layer" if ln else "none", placement="pre", mlp=mlp, init=init, seq_len=seq_len)


@dataclass
class RankCurves:
    """Token residual ratio of the stream after each block (index 0: the input), one row a seed."""

    model: TransformerConfig
    ratios: np.ndarray                 # (seeds, n_blocks + 1)
    seeds: list[int]

    @property
    def mean(self) -> np.ndarray:
        return self.ratios.mean(axis=0)

    def first_below(self, threshold: float) -> int | None:
        """The first layer at which EVERY seed's ratio is below ``threshold`` (None if never)."""
        below = np.all(self.ratios < threshold, axis=0)
        return int(np.argmax(below)) if below.any() else None


def rank_collapse(model: TransformerConfig, seeds: Iterable[int] = (0, 1, 2), n_seq: int = 16,
                  float64: bool = False) -> RankCurves:
    """Feed random unit-variance token vectors (``n_seq`` sequences of ``model.seq_len`` tokens) into
    freshly initialized blocks and measure how distinct the tokens stay, layer by layer (Dong et al. 2021).
    ``float64=True`` runs the network and the inputs in double precision (round-off near 1e-16, not 1e-8)."""
    seeds = list(seeds)
    rows = []
    for s in seeds:
        net = model.build(seed=s)
        h = torch.randn(n_seq, model.seq_len, model.width, generator=generator(10_000 + s))   # (B, T, C)
        if float64:
            net, h = net.double(), h.double()
        rows.append(stream_ratios(net, h))
    return RankCurves(model, np.array(rows), seeds)


FLOAT64_FLOOR = 1e-12          # below this the token residual ratio of a float64 stream is round-off


def loglog_increments(curves: RankCurves, floor: float = FLOAT64_FLOOR) -> list[np.ndarray]:
    """Per seed: the increments of ``log(-log r)`` from block to block, over blocks 1, 2, ... while r stays above
    ``floor``. A doubly exponential collapse at a cubic rate (Dong et al. 2021: ``r_L ~ r_0^(3^L)``) gives increments
    near ``log 3``; an exponential one (``r_L ~ a^L``) gives ``log((L + 1) / L)``, which falls toward 0."""
    out = []
    for row in curves.ratios:
        keep = [v for v in row[1:] if floor < v < 1]
        ll = np.log(-np.log(np.array(keep)))
        out.append(np.diff(ll))
    return out


# -- gradient norms at initialization (Xiong et al. 2020, Fig. 3) --------------------------------
@dataclass
class GradProfile:
    """Per-block gradient norm of the feed-forward output weights (fc2) at init, one row a seed."""

    model: TransformerConfig
    norms: np.ndarray                  # (seeds, n_blocks)

    @property
    def mean(self) -> np.ndarray:
        return np.exp(np.log(self.norms).mean(axis=0))     # geometric mean over seeds

    @property
    def last_over_first(self) -> np.ndarray:
        """Per seed: last block's fc2 gradient norm over the first block's."""
        return self.norms[:, -1] / self.norms[:, 0]


def grad_norms_at_init(model: TransformerConfig, seeds: Iterable[int] = (0, 1, 2), batch_size: int = 64,
                       task: SortTask = SORT) -> GradProfile:
    """Gradient norm of each block's fc2 weight for one batch of the sorting task at initialization."""
    rows = []
    for s in seeds:
        net = model.build(seed=s)
        X, y = task.sample(batch_size, generator(20_000 + s))
        names = [n for n, _ in net.main_layers()]
        norms = layer_grad_norms(net, X, y)
        rows.append([norms[i] for i, n in enumerate(names) if n.endswith(".fc2")])
    return GradProfile(model, np.array(rows))


# -- the path decomposition (Veit / Elhage / Dong) ------------------------------------------------
@dataclass
class PathProfile:
    """The output of an attention-only residual stack split by path length k = 0..n_blocks."""

    n_blocks: int
    n_paths: list[int]                 # C(n_blocks, k): how many paths have length k
    norm: np.ndarray                   # ||P_k||_F / ||output||_F  (mean over sequences)
    ratio: np.ndarray                  # token residual ratio of P_k: how distinct its tokens are
    max_error: float                   # max |sum_k P_k - output| / max |output|: the algebra is exact
    output_ratio: float = field(default=float("nan"))


def path_profile(n_blocks: int = 6, seed: int = 0, n_seq: int = 16, seq_len: int = 32, width: int = 64,
                 init: str = "depth") -> PathProfile:
    """Split a freshly initialized attention-only residual stack's output into path-length terms."""
    cfg = TransformerConfig(n_blocks=n_blocks, width=width, heads=4, residual=True, norm="none", mlp=False,
                            init=init, seq_len=seq_len)
    net = cfg.build(seed=seed)
    h = torch.randn(n_seq, seq_len, width, generator=generator(30_000 + seed))         # (B, T, C)
    terms, out = path_terms(net, h)
    out_norm = out.flatten(1).norm(dim=1)
    norm = np.array([(t.flatten(1).norm(dim=1) / out_norm).mean().item() for t in terms])
    ratio = np.array([token_residual_ratio(t).mean().item() for t in terms])
    err = ((sum(terms) - out).abs().max() / out.abs().max()).item()
    return PathProfile(n_blocks, [math.comb(n_blocks, k) for k in range(n_blocks + 1)], norm, ratio, err,
                       token_residual_ratio(out).mean().item())


# -- skip -> no collapse -> trainable, in one network ---------------------------------------------------------------
def collapse_at_init(name: str, n_blocks: Iterable[int], seeds: Iterable[int] = (0, 1, 2),
                     n_seq: int = 64) -> dict[int, list[float]]:
    """The token residual ratio r after the last block of the named variant (a key of :data:`VARIANTS`) at
    initialization, on sorting inputs: ``{n_blocks: [r per seed]}``. The same networks the depth sweep trains, run
    in float64: in float32 a collapsed stream's r stops at about 2e-7, the format's round-off, not a measured value;
    in float64 a value below :data:`FLOAT64_FLOOR` is round-off too (the tokens are equal to the arithmetic's
    precision). ``n_seq`` sorting inputs per network (64: float64 costs about twice float32's time per sequence)."""
    return {L: [final_collapse(variant_config(name, L).build(s), n_seq=n_seq, float64=True)["r_final"] for s in seeds]
            for L in n_blocks}


# -- the chapter's claims, through the inference protocol ----------------------------------------------------------
# Pre-LN and post-LN "end alike" at NORESID_BLOCKS blocks only if the mean loss difference is inside +-EQUIV_MARGIN.
# Fixed before the confirmation on fresh seeds, from the scale of the stored losses: both placements end near 0.015
# nats, so a margin must be a fraction of that (0.05 would be three times the loss itself). 0.004 nats is about a
# quarter of the loss: wider than the seed-to-seed spread of one arm (about 0.002) and about half the change that two
# more blocks bring (4 -> 6 blocks lowers the loss by about 0.007), so "alike" means "closer than depth moves it".
EQUIV_MARGIN = 0.004


def _losses(rows, **match) -> list[float]:
    sub = sorted((r for r in rows if all(r[k] == v for k, v in match.items())), key=lambda r: r["seed"])
    return [r["train_loss"] for r in sub]


#: The stored sweeps the chapter's family reads, as ``transformers_<name>``.
FAMILY_SWEEPS = ("depth", "warmup", "initctl", "recall")


def chapter_family(records: dict[str, dict]):
    """The chapter's family of paired claims over seeds, from the stored records only (``records[name]`` is what
    ``load_sweep(f"transformers_{name}", tag)`` returns for depth, warmup, initctl and recall), so that the
    confirmation on fresh seeds reads its own files through the same code. Holm within the family."""
    from skipnet.inference import Family
    from skipnet.experiments.transformers_rnn import RECALL_BUDGET
    fam = Family("Transformers")
    depth, warm = records["depth"]["data"], records["warmup"]["data"]
    L = NORESID_BLOCKS
    # the encoder without skips keeps post-LN's placement (VARIANTS) and has the standard initialization (the
    # depth-aware branch scale exists only with skips), so post-LN with skips and the standard initialization is its
    # matched control: the two differ in the skip alone
    fam.add("noresid_post", _losses(depth, label="no residual", n_blocks=L),
            _losses(records["initctl"]["data"], label="post-LN", n_blocks=L),
            f"final loss at {L} blocks: no residual minus post-LN with the same (standard) init", unit="nats")
    post = dict(placement="post", lr=WARMUP_LR)
    fam.add("warmup", _losses(warm, warmup_steps=0, **post), _losses(warm, warmup_steps=WARMUP_STEPS, **post),
            f"post-LN, {WARMUP_BLOCKS} blocks, lr {WARMUP_LR:g}: final loss without minus with warm-up", unit="nats")
    fam.add("placement", _losses(warm, placement="post", lr=WARMUP_LR, warmup_steps=0),
            _losses(warm, placement="pre", lr=WARMUP_LR, warmup_steps=0),
            f"{WARMUP_BLOCKS} blocks, lr {WARMUP_LR:g}, no warm-up: final loss post-LN minus pre-LN", unit="nats")
    fam.add("pre_post_alike", _losses(depth, label="pre-LN", n_blocks=L), _losses(depth, label="post-LN", n_blocks=L),
            f"final loss at {L} blocks: pre-LN minus post-LN (both train)", margin=EQUIV_MARGIN, unit="nats",
            fmt=".3f")
    recall = records["recall"]["data"]

    def steps(label, T, lr):                        # unsolved seeds counted at the budget (censored: a lower bound)
        sub = sorted((r for r in recall if (r["label"], r["seq_len"], r["lr"]) == (label, T, lr)),
                     key=lambda r: r["seed"])
        return [r["steps_to_solve"] if r["solved"] else RECALL_BUDGET for r in sub]
    lr = max(records["recall"]["config"]["lrs"])
    fam.add("tanh_lstm", steps("tanh RNN", 10, lr), steps("LSTM, no forget gate", 10, lr),
            f"recall, T = 10, lr {lr:g}: steps to solve, tanh RNN minus LSTM without forget gate (unsolved at the "
            f"budget)", unit="steps", fmt=".0f")
    return fam


def confirmation_seeds(m: int, alpha: float = 0.05) -> int:
    """The fewest paired seeds with which every one of ``m`` claims under Holm can be detected: the exact two-sided
    sign-flip test's smallest p, ``2 / 2^n``, must be below ``alpha / m`` (Holm's first threshold)."""
    from skipnet.inference import min_p
    n = 1
    while min_p(n) >= alpha / m:
        n += 1
    return n
