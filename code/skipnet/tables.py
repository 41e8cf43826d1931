"""The book's text tables: Markdown built from experiment results or stored rows, shown with ``Markdown(...)``.

One module for every table, so that figures (:mod:`skipnet.plotting`) only draw and the numbers a table
reads come from the experiments (:func:`~skipnet.experiments.identity.best_lr_errors`,
:func:`~skipnet.experiments.identity_variants.rank_of`, ...).

* the opening chapter: :func:`degradation_markdown`;
* *The identity mapping*: :func:`fit_fair_table_md` (the identity fit at each stack's best learning rate),
  :func:`decode_table_md` (what the last stream still holds), :func:`variants_table_md` and
  :func:`placement_table_md` (He et al. 2016, Tables 1 and 2), :func:`init_table_md` and
  :func:`init_lr_table_md` (branch initializations without normalization).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from skipnet.experiments.identity import best_lr_errors, group_rows, median_error
from skipnet.experiments.identity_variants import rank_of
from skipnet.history import Run

__all__ = ["degradation_markdown", "fit_fair_table_md", "decode_table_md", "readback_control_md", "best_lr_table_md",
           "variants_table_md", "placement_table_md", "init_table_md", "init_lr_table_md"]

# the streams of the decodability study, in the order of the table's rows
TABLE_NAMES = {"residual": "sum", "plain": "plain", "dense": "concatenation"}


def _get(obj, name):
    return obj[name] if isinstance(obj, Mapping) else getattr(obj, name)


def _pct(v) -> str:
    return "fail" if v is None else f"{v:.2f}"


def degradation_markdown(runs: Sequence[Run]) -> str:
    """A markdown table: depth, plain and residual final training loss / training error / test error (medians)."""
    def med(rs, key):
        vals = [r.row()[key] for r in rs if r.row()[key] is not None]
        return float(np.median(vals)) if vals else float("nan")

    lines = ["| depth | plain: train loss | plain: train error | plain: test error "
             "| residual: train loss | residual: train error | residual: test error |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for d in sorted({r.model.depth for r in runs}):
        p = [r for r in runs if r.model.depth == d and not r.model.residual]
        q = [r for r in runs if r.model.depth == d and r.model.residual]
        lines.append(f"| {d} | {med(p, 'train_loss'):.3f} | {med(p, 'train_err'):.1%} | {med(p, 'test_err'):.1%} "
                     f"| {med(q, 'train_loss'):.3f} | {med(q, 'train_err'):.1%} | {med(q, 'test_err'):.1%} |")
    return "\n".join(lines)


def fit_fair_table_md(rows: Sequence[Mapping]) -> str:
    """Best-lr median error per task, stack and depth, with the error relative to the same stack's 1-block error."""
    depths = sorted({r["n_blocks"] for r in rows})
    lines = ["| task | stack | " + " | ".join(f"{d} block{'s' if d > 1 else ''}: error (best lr)" for d in depths)
             + f" | {depths[-1]} blocks / 1 block |", "|---|---|" + "---|" * (len(depths) + 1)]
    for lift in (False, True):
        for residual in (False, True):
            best = best_lr_errors(rows, lift, residual)
            cells = [f"{median_error(best[d][1]):.3g} ({best[d][0]:g})" for d in depths]
            ratio = median_error(best[depths[-1]][1]) / median_error(best[depths[0]][1])
            lines.append(f"| {'[x, -x]' if lift else 'x'} | {'residual' if residual else 'plain'} | "
                         + " | ".join(cells) + f" | {ratio:.3g} |")
    return "\n".join(lines)


def decode_table_md(rows: Sequence[Mapping]) -> str:
    """Medians over seeds, read from the last stream: R^2 of x_0, of the pixels, of the worst-kept F_k, and the
    class accuracy of a linear probe (residual = "sum", dense = "concatenation")."""
    lines = ["| blocks | stream | parameters | test error % | $R^2$ $x_0$ | $R^2$ pixels | $R^2$ worst $F_k$ "
             "| class, probe % |", "|---|---|---|---|---|---|---|---|"]
    for n in sorted({r["n_blocks"] for r in rows}):
        for kind in TABLE_NAMES:
            sub = [r for r in rows if r["kind"] == kind and r["n_blocks"] == n]
            if not sub:
                continue
            d = [r["decode"][str(n)] for r in sub]
            lines.append(f"| {n} | {TABLE_NAMES[kind]} | {sub[0]['params']:,} | {100 * np.median([r['test_err'] for r in sub]):.1f} "
                         f"| {np.median([x['x0'] for x in d]):.3f} | {np.median([x['pixels'] for x in d]):.3f} "
                         f"| {np.median([min(x['writes']) for x in d]):.3f} | {100 * np.median([x['class_acc'] for x in d]):.1f} |")
    return "\n".join(lines)


def readback_control_md(rows: Sequence[Mapping]) -> str:
    """The read-back's controls (``decode_control``), medians over seeds: for the residual stream, the R^2 of the
    writes F_k read from x_L and from x_L - F_k (lowest and highest over k) and the largest unique part, the R^2
    lost when the term is removed; for both streams, the R^2 of the input x_0 and of the worst-kept state x_k."""
    lines = ["| blocks | stream | test error % | $R^2$ $F_k$ from $x_L$ | $R^2$ $F_k$ from $x_L - F_k$ "
             "| largest $R^2$ lost by removing $F_k$ | $R^2$ $x_0$ | $R^2$ worst state $x_k$ |",
             "|---|---|---|---|---|---|---|---|"]
    for n in sorted({r["n_blocks"] for r in rows}):
        for kind in ("residual", "plain"):
            sub = [r for r in rows if r["kind"] == kind and r["n_blocks"] == n]
            if not sub:
                continue
            d = [r["decode"][str(n)] for r in sub]
            err = 100 * np.median([r["test_err"] for r in sub])
            states = f"| {np.median([x['states'][0] for x in d]):.3f} | {np.median([min(x['states']) for x in d]):.3f} |"
            if kind == "residual":
                w = f"{np.median([min(x['writes']) for x in d]):.3f} to {np.median([max(x['writes']) for x in d]):.3f}"
                a = (f"{np.median([min(x['writes_ablated']) for x in d]):.3f} to "
                     f"{np.median([max(x['writes_ablated']) for x in d]):.3f}")
                u = f"{np.median([max(np.subtract(x['writes'], x['writes_ablated'])) for x in d]):.3f}"
            else:
                w = a = u = "(no sum)"
            lines.append(f"| {n} | {TABLE_NAMES[kind]} | {err:.1f} | {w} | {a} | {u} {states}")
    return "\n".join(lines)


def best_lr_table_md(best: Mapping[str, Mapping], labels: Mapping[str, str], paper: Mapping[str, float | None],
                     baseline: str = "identity") -> str:
    """Best against best (:func:`skipnet.experiments.identity_variants.best_lr`): each variant's median test error at
    every learning rate of the grid, its best rate, the error there over the identity's at its own best rate, and the
    paper's error (ResNet-110, CIFAR-10; "fail": above 20 %)."""
    lrs = sorted({lr for b in best.values() for lr in b["by_lr"]})
    lines = ["| variant | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | best lr | x identity, best against best "
             "| paper: test error % |", "|---|" + "---|" * (len(lrs) + 3)]
    for key, label in labels.items():
        b = best[key]
        cells = " | ".join("" if lr not in b["by_lr"] else f"{100 * b['by_lr'][lr]:.1f}" for lr in lrs)
        p = paper.get(key)
        lines.append(f"| {label} | {cells} | {b['lr']:g} | {b['test_err'] / best[baseline]['test_err']:.1f} "
                     f"| {'fail' if p is None else f'{p:g}'} |")
    return "\n".join(lines)


def variants_table_md(summary: Mapping[str, Mapping], variants: Mapping[str, object], keys: Sequence[str],
                      baseline: tuple[Mapping[str, float], str] | None = None) -> str:
    """A markdown table: the paper's CIFAR-10 test error (ResNet-110) beside ours on the digits
    (median test error and training loss over seeds, failures / seeds: above the paper's 20 %).
    ``baseline = (paper's baseline error per variant group, our baseline key)`` adds both errors relative to the
    baseline's (the paper's Table 1 rows against its original unit, its Table 2 rows against full pre-activation)."""
    extra = " | paper: x identity | ours: x identity" if baseline is not None else ""
    lines = [f"| variant | paper: CIFAR-10 test error %, ResNet-110 | ours: test error %, median [range]{extra} "
             "| ours: training loss | ours: above 20 % |",
             "|---|---|---|" + ("---|---|" if baseline is not None else "") + "---|---|"]
    for k in keys:
        if k not in summary:
            continue
        v, s = variants[k], summary[k]
        lo, hi = s["test_err_range"]
        paper = _pct(_get(v, "paper_110"))
        note = _get(v, "paper_note")
        if note:
            paper += f" ({note})"
        ratio = ""
        if baseline is not None:
            bases, ours = baseline
            p110, group = _get(v, "paper_110"), _get(v, "group")
            paper_ratio = "1.00" if k == ours else "fail" if p110 is None else f"{p110 / bases[group]:.2f}"
            ratio = f" | {paper_ratio} | {s['test_err'] / summary[ours]['test_err']:.1f}"
        lines.append(f"| {_get(v, 'label')} | {paper} | {100 * s['test_err']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]{ratio} "
                     f"| {'-' if s['train_loss'] is None else format(s['train_loss'], '.3g')} | {s['fails']} / {s['n']} |")
    return "\n".join(lines)


def placement_table_md(arms: Mapping[str, Mapping[str, Mapping]], variants: Mapping[str, object],
                       keys: Sequence[str]) -> str:
    """The placements beside He et al. (2016), Table 2: the paper's ResNet-110 error and rank, then ours (median
    test error %, rank) for each arm (name -> summary keyed by placement)."""
    paper = {k: _get(variants[k], "paper_110") for k in keys}
    lines = ["| placement | paper: CIFAR-10 % (rank) | " + " | ".join(f"ours, {a}: % (rank)" for a in arms) + " |",
             "|---|---|" + "---|" * len(arms)]
    pr = rank_of(paper)
    ranks = {a: rank_of({k: s[k]["test_err"] for k in keys}) for a, s in arms.items()}
    for k in keys:
        cells = [f"{100 * s[k]['test_err']:.1f} ({ranks[a][k]})" for a, s in arms.items()]
        lines.append(f"| {_get(variants[k], 'label')} | {paper[k]:.2f} ({pr[k]}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def init_table_md(rows: Sequence[Mapping], labels: Mapping[str, str], good_loss: float = 1.0) -> str:
    """A markdown table of the branch-initialization sweep: per initialization (``labels``: key -> label),
    runs that diverged, runs that reached a training loss below ``good_loss``, and medians of the finished runs."""
    lines = [f"| branch initialization | diverged / seeds | training loss < {good_loss:g} / seeds "
             "| final training loss, median of the finished | test error %, median of the finished |",
             "|---|---|---|---|---|"]
    for key, label in labels.items():
        sub = [r for r in rows if r["init"] == key]
        done = [r for r in sub if r["status"] == "finished"]
        good = sum(r["train_loss"] < good_loss for r in done)
        loss = f"{np.median([r['train_loss'] for r in done]):.3g}" if done else "-"
        terr = f"{100 * np.median([r['test_err'] for r in done]):.1f}" if done else "-"
        lines.append(f"| {label} | {len(sub) - len(done)} / {len(sub)} | {good} / {len(sub)} | {loss} | {terr} |")
    return "\n".join(lines)


def init_lr_table_md(rows: Sequence[Mapping], labels: Mapping[str, str]) -> str:
    """Per initialization: learning rates tried, runs diverged, runs ending below a loss of 1, best median loss (lr)."""
    lines = ["| branch initialization | learning rates | diverged / runs | training loss < 1 / runs "
             "| best median training loss (lr) |", "|---|---|---|---|---|"]
    groups = group_rows(rows, "init", "lr")
    for key, label in labels.items():
        sub = [r for r in rows if r["init"] == key]
        lrs = sorted({r["lr"] for r in sub})
        meds = {lr: median_error([r["train_loss"] if r["status"] == "finished" else None for r in groups[(key, lr)]])
                for lr in lrs}
        best = min(meds, key=meds.get)
        best_text = f"{meds[best]:.3g} ({best:g})" if math.isfinite(meds[best]) else "- (all diverged)"
        lines.append(f"| {label} | {', '.join(f'{lr:g}' for lr in lrs)} | {sum(r['status'] != 'finished' for r in sub)}"
                     f" / {len(sub)} | {sum(r['status'] == 'finished' and r['train_loss'] < 1 for r in sub)} / {len(sub)} "
                     f"| {best_text} |")
    return "\n".join(lines)
