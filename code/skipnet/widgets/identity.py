"""Labs of the chapter *The identity mapping*.

* :class:`ShortcutLab`: a shortcut variant and an activation placement (He et al. 2016, Tables 1-2)
  trained against the identity-shortcut, full pre-activation baseline; every run joins a table.
* :class:`BranchInitLab`: a deep residual CNN without normalization, trained with the chosen branch
  initialization; a divergence is reported as "diverged at step k".
"""
from __future__ import annotations

import html

import ipywidgets as W
import matplotlib.pyplot as plt

from skipnet.checks import check_float, check_int, check_seed
from skipnet.experiments.identity import INIT_LABELS, INIT_VARIANTS, NO_NORM_MODEL, NO_NORM_TRAIN, init_config, \
    train_init
from skipnet.experiments.identity_variants import (PLACEMENT_KEYS, SHORTCUT_KEYS, STUDY_TRAIN, VARIANTS,
                                                   race_configs, shortcut_config)
from skipnet.plotting.core import PLAIN, RESIDUAL
from skipnet.plotting.identity import INIT_COLORS, plot_loss_runs
from skipnet.widgets.base import Lab

__all__ = ["ShortcutLab", "BranchInitLab", "SHORTCUT_DEFAULT", "INIT_DEPTHS"]

SHORTCUT_DEFAULT = {"shortcut": "scale", "placement": "pre", "n_blocks": 54, "epochs": 10, "seed": 0}
"""The study's own network and budget, so that the page can show the default from the stored sweep (seed 0)."""
INIT_DEPTHS = (20, 32, 44, 56, 110)
BASELINE = "identity, full pre-act"


class ShortcutLab(Lab):
    """Shortcut variant, activation placement, number of blocks, epochs, seed -> the variant and the identity
    baseline trained side by side (live loss curves); the table below keeps every run of the session.
    Default (constant scaling 0.5, 54 blocks as in the chapter's study, 10 epochs): several seconds on one core."""

    title = "Shortcut lab: He et al. (2016) variants on a deep MLP (digits)"
    page = "book/identity"
    run_label = "Train"
    min_refresh_s = 0.5

    def __init__(self, threaded: bool = True):
        d = SHORTCUT_DEFAULT
        self.shortcut = W.Dropdown(options=[(VARIANTS[k].label, k) for k in SHORTCUT_KEYS], value=d["shortcut"],
                                   description="shortcut", layout=W.Layout(width="380px"))
        self.placement = W.Dropdown(options=[(VARIANTS[k].label, k) for k in PLACEMENT_KEYS], value=d["placement"],
                                    description="placement", layout=W.Layout(width="320px"))
        self.n_blocks = W.IntSlider(value=d["n_blocks"], min=2, max=100, description="blocks", continuous_update=False)
        self.epochs = W.IntSlider(value=d["epochs"], min=1, max=30, description="epochs", continuous_update=False)
        self.seed = W.IntText(value=d["seed"], description="seed", layout=W.Layout(width="160px"))
        self.table: dict[tuple, dict] = {}    # (shortcut, placement, n_blocks, epochs, seed) -> variant_row
        self.table_html = W.HTML()
        super().__init__([self.shortcut, self.placement, self.n_blocks, self.epochs, self.seed], threaded=threaded)
        self.widget.children = (*self.widget.children, self.table_html)

    def compute(self) -> dict:
        shortcut, placement = self.shortcut.value, self.placement.value
        depth = check_int("n_blocks", self.n_blocks.value, 2, 100)
        epochs = check_int("epochs", self.epochs.value, 1, 30)
        seed = check_seed(self.seed.value)
        chosen = (shortcut, placement, depth, epochs, seed)
        base = ("identity", "pre", depth, epochs, seed)
        cfgs = {}
        for key in dict.fromkeys([base, chosen]):
            if key not in self.table:
                cfgs[key] = shortcut_config(*key[:3])
        self.update(0.0, f"training {len(cfgs)} network(s) of {depth} blocks...")

        names = {str(i): k for i, k in enumerate(cfgs)}

        def progress(fraction, text, histories) -> bool:
            partial = {self._label(names[n]): {"loss": h.loss, "status": h.status} for n, h in histories.items()}
            for k in (base, chosen):
                if k in self.table:
                    partial[self._label(k)] = {"loss": self.table[k]["loss"], "status": self.table[k]["status"]}
            return self.report(fraction, text, partial)

        fresh = {}
        if cfgs:
            runs = race_configs({n: cfgs[k] for n, k in names.items()}, seed, STUDY_TRAIN.with_(epochs=epochs),
                                progress=progress)
            for n, row in runs.items():
                fresh[names[n]] = row
                if not row["status"].startswith("stopped"):        # finished or diverged: a result to keep
                    self.table[names[n]] = row
        result = {}
        for k in dict.fromkeys([base, chosen]):
            row = fresh.get(k) or self.table[k]
            result[self._label(k)] = {"loss": row["loss"], "status": row["status"], "test_err": row["test_err"],
                                      "train_loss": row["train_loss"], "baseline": k == base}
        return result

    @staticmethod
    def _label(key: tuple) -> str:
        shortcut, placement = key[:2]
        if (shortcut, placement) == ("identity", "pre"):
            return BASELINE
        return f"{VARIANTS[shortcut].label}, {VARIANTS[placement].label}"

    def render(self, result: dict):
        fig, ax = plt.subplots(figsize=(6.6, 3.5))
        colors = {label: (RESIDUAL if label == BASELINE else PLAIN) for label in result}
        plot_loss_runs({k: {"loss": v["loss"], "status": v["status"]} for k, v in result.items()}, ax, colors=colors)
        ax.set_title(f"{self.n_blocks.value} blocks: training loss, live", fontsize=10)
        fig.tight_layout()
        return fig

    def summary(self, result: dict) -> str:
        parts = []
        for label, r in result.items():
            end = (f"test error {100 * r['test_err']:.1f} %, training loss {r['train_loss']:.3g}"
                   if r["test_err"] is not None else r["status"])
            parts.append(f"<b>{html.escape(label)}</b>: {end}")
        self.table_html.value = self.table_markup()
        return "<br>".join(parts)

    def table_markup(self) -> str:
        """Every run of this session that finished or diverged, one row each, best first (an HTML table)."""
        head = ("<table style='border-collapse:collapse;font-size:90%'><tr><th style='text-align:left'>shortcut</th>"
                "<th style='text-align:left'>placement</th><th>blocks</th><th>epochs</th><th>seed</th>"
                "<th>test error %</th><th>train loss</th></tr>")
        rows = []
        def best_first(kv):
            return 2.0 if kv[1]["test_err"] is None else kv[1]["test_err"]
        for (shortcut, placement, depth, epochs, seed), r in sorted(self.table.items(), key=best_first):
            err, loss = ((f"{100 * r['test_err']:.1f}", f"{r['train_loss']:.3g}") if r["test_err"] is not None
                         else (html.escape(r["status"]), "-"))
            rows.append(f"<tr><td>{html.escape(VARIANTS[shortcut].label)}</td><td>{html.escape(VARIANTS[placement].label)}"
                        f"</td><td>{depth}</td><td>{epochs}</td><td>{seed}</td><td>{err}</td><td>{loss}</td></tr>")
        return head + "".join(rows) + "</table>"


class BranchInitLab(Lab):
    """Branch initialization, depth, lr, epochs, seed -> a residual CNN WITHOUT normalization trained on the
    digits; the runs of the session are overlaid. A divergence ends its curve with an x and reads
    "diverged at step k". Default (standard init, depth 56): diverges within a few steps."""

    title = "Branch-init lab: a deep residual CNN without normalization"
    page = "book/identity/init"
    run_label = "Train"
    min_refresh_s = 0.5
    max_runs_shown = 6

    def __init__(self, threaded: bool = True):
        self.init = W.Dropdown(options=[(INIT_LABELS[k], k) for k in INIT_VARIANTS], value="standard",
                               description="branch init", layout=W.Layout(width="330px"))
        self.depth = W.Dropdown(options=INIT_DEPTHS, value=56, description="depth")
        self.lr = W.FloatLogSlider(value=NO_NORM_TRAIN.lr, base=10, min=-3, max=0, step=0.1, description="lr",
                                   readout_format=".3g", continuous_update=False)
        self.epochs = W.IntSlider(value=10, min=1, max=30, description="epochs", continuous_update=False)
        self.seed = W.IntText(value=0, description="seed", layout=W.Layout(width="160px"))
        self.runs: dict[str, dict] = {}
        super().__init__([self.init, self.depth, self.lr, self.epochs, self.seed], threaded=threaded)

    def compute(self) -> dict:
        key = self.init.value
        lr = check_float("lr", self.lr.value, 1e-4, 1.0)
        epochs = check_int("epochs", self.epochs.value, 1, 30)
        seed = check_seed(self.seed.value)
        cfg = init_config(key, NO_NORM_MODEL.with_(depth=int(self.depth.value)))
        label = f"{INIT_LABELS[key]}, depth {cfg.depth}, lr {lr:.3g}, seed {seed}"
        self.update(0.0, f"building {label}...")
        runs = dict(self.runs)

        def progress(fraction, text, h) -> bool:
            runs[label] = {"loss": h.loss, "status": h.status, "init": key}
            return self.report(fraction, text, runs)

        h = train_init(key, seed, NO_NORM_MODEL.with_(depth=cfg.depth), NO_NORM_TRAIN.with_(lr=lr, epochs=epochs),
                       progress=progress).history
        f = h.final
        self.runs.pop(label, None)
        self.runs[label] = {"loss": list(h.loss), "status": h.status, "init": key,
                            "train_loss": f.get("train_loss"), "test_acc": f.get("test_acc")}
        while len(self.runs) > self.max_runs_shown:
            self.runs.pop(next(iter(self.runs)))
        return {"label": label, "runs": dict(self.runs)}

    def render(self, result: dict):
        runs = result["runs"] if "runs" in result else result
        fig, ax = plt.subplots(figsize=(6.6, 3.5))
        inits = [r.get("init") for r in runs.values()]
        colors = {label: INIT_COLORS[r["init"]] for label, r in runs.items()
                  if r.get("init") in INIT_COLORS and inits.count(r["init"]) == 1}
        plot_loss_runs(runs, ax, colors=colors)
        ax.set_title("residual CNN without normalization: training loss", fontsize=10)
        fig.tight_layout()
        return fig

    def summary(self, result: dict) -> str:
        r = result["runs"][result["label"]]
        if r["status"] == "finished":
            end = f"finished: training loss {r['train_loss']:.3g}, test accuracy {r['test_acc']:.3f}"
        else:
            end = f"<span style='color:#b00'>{r['status']}</span>"
        return f"<b>{html.escape(result['label'])}</b>: {end}"
