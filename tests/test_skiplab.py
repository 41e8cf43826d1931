"""The in-browser lab of the opening chapter (site_assets/skiplab/): its data are the package's, and its JavaScript
trains the package's network.

* The shipped ``digits.js`` is what ``scripts/export_skiplab.py`` writes now (the package's split, model and
  training settings), and its grey levels rebuild ``load_digits`` bit for bit.
* In headless Chromium (the page served from localhost, every other host blocked), the JavaScript rebuilds the same
  float32 digits, and from the package's initial weights and the same batches its losses, gradients, weights and
  BatchNorm running statistics after a few SGD steps equal those of ``skipnet.train.Trainer`` to float32 tolerance,
  for the plain and the residual net.

The lab as a reader uses it on the built site (press Train, read the curves) is in tests/test_skiplab_site.py.
"""
from __future__ import annotations

import functools
import http.server
import json
import threading

import numpy as np
import pytest
import torch

from skipnet.data import load_digits
from skipnet.models import build_model
from skipnet.skiplab import LAB_DATA_FILE, LAB_TRAIN, lab_js, lab_model
from skipnet.train import Trainer

ASSETS = LAB_DATA_FILE.parents[1]


# ---------------------------------------------------------------------------------------------------- the data
def _shipped() -> dict:
    text = LAB_DATA_FILE.read_text()
    return json.loads(text[text.index("{"):text.rindex("}") + 1])


def test_shipped_data_file_is_what_the_export_writes_now():
    assert LAB_DATA_FILE.read_text() == lab_js(), \
        "site_assets/skiplab/digits.js is stale: rerun `python scripts/export_skiplab.py`"


def test_shipped_levels_rebuild_the_packages_digits_bit_for_bit():
    d, ds = _shipped()["digits"], load_digits(flatten=True)
    mean, std = np.float32(d["mean"]), np.float32(d["std"])
    for levels, labels, X, y in ((d["train_levels"], d["train_labels"], ds.X_train, ds.y_train),
                                 (d["test_levels"], d["test_labels"], ds.X_test, ds.y_test)):
        raw = (np.frombuffer(levels.encode(), np.uint8) - ord("a")).astype(np.float32).reshape(-1, 64)
        assert np.array_equal((raw - mean) / std, X.numpy())
        assert [int(c) for c in labels] == y.tolist()


def test_shipped_settings_are_the_packages():
    s = _shipped()
    t = LAB_TRAIN
    assert s["train"] == {"lr": t.lr, "momentum": t.momentum, "nesterov": t.nesterov, "weight_decay": t.weight_decay,
                          "batch_size": t.batch_size, "epochs": t.epochs, "warmup_steps": t.warmup_steps,
                          "schedule": t.schedule}
    assert s["model"]["width"] == lab_model(2, True).width
    assert s["default_blocks"] in s["blocks"]


def test_readme_states_the_labs_weight():
    """site_assets/README.md states each file's size and gzipped size in kB; they must stay true."""
    import gzip
    import re

    readme = (ASSETS / "README.md").read_text()
    for name in ("skiplab.js", "digits.js"):
        m = re.search(rf"`{re.escape(name)}` (\d+) kB \((\d+) kB gzipped\)", readme)
        assert m, f"site_assets/README.md does not state the weight of {name}"
        data = (ASSETS / "skiplab" / name).read_bytes()
        assert (int(m[1]), int(m[2])) == (round(len(data) / 1e3), round(len(gzip.compress(data, 9)) / 1e3)), name


def test_export_refuses_a_network_the_port_does_not_implement(monkeypatch):
    import skipnet.skiplab as lab

    monkeypatch.setattr(lab, "LAB_MODEL", lab.LAB_MODEL.with_(placement="post"))
    with pytest.raises(ValueError, match="pre-activation"):
        lab.lab_data()


# --------------------------------------------------------------------------------------- the browser, against torch
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def lab_page():
    """A localhost page (site_assets/ served) with digits.js and skiplab.js loaded; no other host reachable."""
    import os

    from playwright.sync_api import sync_playwright

    from test_browser import CHROMIUM, CHROMIUM_FLAGS

    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):   # a clear failure, never a skip
        pytest.fail(f"Chromium not found at {CHROMIUM}: the lab's agreement test runs its JavaScript there. Install "
                    "it with `apt-get install -y chromium` (as .ci/run does), or set CHROMIUM.", pytrace=False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(ASSETS)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/"
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
    page = browser.new_page()
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort())
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base + "skiplab/")
    page.add_script_tag(url=base + "skiplab/digits.js")
    page.add_script_tag(url=base + "skiplab/skiplab.js")
    assert page.evaluate("() => typeof SkipLab") == "object", errors
    yield page
    browser.close()
    pw.stop()
    server.shutdown()
    server.server_close()


def test_browser_rebuilds_the_packages_float32_digits(lab_page):
    ds = load_digits(flatten=True)
    got = lab_page.evaluate("""() => { const d = SkipLab.decodeDigits(SKIPLAB_DATA);
        return [Array.from(new Uint32Array(d.train.X.buffer)), Array.from(new Uint32Array(d.test.X.buffer)),
                Array.from(d.train.y), Array.from(d.test.y)]; }""")
    for bits, X in ((got[0], ds.X_train), (got[1], ds.X_test)):
        assert np.array_equal(np.array(bits, dtype=np.uint32), X.numpy().ravel().view(np.uint32))
    assert got[2] == ds.y_train.tolist() and got[3] == ds.y_test.tolist()


class _Batches:
    """A Task that hands skipnet's Trainer the given batches of training digits, in order."""

    def __init__(self, X, y, batches):
        self.X, self.y, self.batches, self.k = X, y, batches, 0

    def sample(self, batch_size, generator):
        idx = self.batches[self.k]
        self.k += 1
        return self.X[idx], self.y[idx]


def package_steps(n_blocks: int, residual: bool, k: int, seed: int = 0) -> dict:
    """skipnet's own Trainer on the lab's network: the initial state, the batches (indices into the training set),
    then for each of ``k`` steps the loss and every parameter's gradient, and the state after the last step."""
    ds = load_digits(flatten=True)
    net = build_model(lab_model(n_blocks, residual), seed=seed)
    state = lambda: {n: t.detach().numpy().ravel().copy() for n, t in net.state_dict().items()  # noqa: E731
                     if not n.endswith("num_batches_tracked")}
    init = state()
    gen = torch.Generator().manual_seed(1000 + seed)
    batches = [torch.randperm(len(ds.X_train), generator=gen)[:LAB_TRAIN.batch_size] for _ in range(k)]
    total = LAB_TRAIN.total_steps(len(ds.X_train))               # the lab's schedule: warm-up, cosine over `total`
    trainer = Trainer(net, _Batches(ds.X_train, ds.y_train, batches), LAB_TRAIN.with_(steps=total), device="cpu")
    grads = []
    trainer.add_callback("on_step_end", lambda tr: grads.append(
        {n: p.grad.detach().numpy().ravel().copy() for n, p in tr.model.named_parameters()}))
    for _ in range(k):
        trainer.step()
    assert trainer.history.steps_done == k
    return {"init": init, "batches": [b.tolist() for b in batches], "total": total, "loss": trainer.history.loss,
            "grads": grads, "final": state()}


JS_STEPS = """([blocks, residual, init, batches, total]) => {
  const D = SKIPLAB_DATA, digits = SkipLab.decodeDigits(D), F = D.model.in_features, B = batches[0].length;
  const net = new SkipLab.Net(D.model, blocks, residual, 12345);   // any seed: the package's weights replace these
  net.load(init);
  const out = {loss: [], grads: []};
  batches.forEach((idx, step) => {
    const X = new Float32Array(B * F), y = new Int32Array(B);
    idx.forEach((e, i) => { X.set(digits.train.X.subarray(e * F, (e + 1) * F), i * F); y[i] = digits.train.y[e]; });
    out.loss.push(net.lossAndGrad(X, y, B));
    const g = {};
    net.order.forEach(n => { g[n] = Array.from(net.grads[n]); });
    out.grads.push(g);
    net.sgdStep(SkipLab.lrAt(D.train, step, total), D.train);
  });
  out.final = {};
  Object.keys(init).forEach(n => { out.final[n] = Array.from(net.params[n] || net.buffers[n]); });
  return out;
}"""


def _rel(a, b) -> float:
    """Largest difference relative to the tensor's scale (its largest entry in the package)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


# (blocks, residual): several SGD steps from the same start. Deep plain nets are left to the next test: their
# gradients explode with depth, so float32 rounding itself moves their losses within a few steps (torch's float32
# against its float64: measured there).
AGREEMENT_CASES = [(2, True), (20, True), (54, True), (2, False), (5, False)]
STEPS = 4
TOL = 1e-3          # float32 tolerance, relative to each tensor's scale (measured: see test output)


@pytest.mark.parametrize("blocks,residual", AGREEMENT_CASES)
def test_browser_training_steps_equal_the_packages(lab_page, blocks, residual, capsys):
    ref = package_steps(blocks, residual, STEPS)
    init = {n: v.tolist() for n, v in ref["init"].items()}
    js = lab_page.evaluate(JS_STEPS, [blocks, residual, init, ref["batches"], ref["total"]])
    assert np.allclose(js["loss"], ref["loss"], rtol=1e-5, atol=0), (js["loss"], ref["loss"])
    worst = {}
    for step, (gj, gp) in enumerate(zip(js["grads"], ref["grads"])):
        assert set(gj) == set(gp), "the browser's parameters are not the package's"
        for name in gp:
            worst[f"grad {name} step {step}"] = _rel(gj[name], gp[name])
    for name in ref["final"]:
        worst[f"after {STEPS} steps: {name}"] = _rel(js["final"][name], ref["final"][name])
    top = max(worst, key=worst.get)
    with capsys.disabled():
        print(f"\n  {'residual' if residual else 'plain'} {blocks} blocks: largest loss difference "
              f"{max(abs(a - b) for a, b in zip(js['loss'], ref['loss'])):.2e}, largest relative tensor difference "
              f"{worst[top]:.2e} ({top})")
    assert worst[top] < TOL, f"{top}: {worst[top]:.2e}"


JS_ONE_STEP = """([blocks, init, idx]) => {
  const D = SKIPLAB_DATA, digits = SkipLab.decodeDigits(D), F = D.model.in_features, B = idx.length;
  const net = new SkipLab.Net(D.model, blocks, false, 12345);
  net.load(init);
  const X = new Float32Array(B * F), y = new Int32Array(B);
  idx.forEach((e, i) => { X.set(digits.train.X.subarray(e * F, (e + 1) * F), i * F); y[i] = digits.train.y[e]; });
  const out = {loss: net.lossAndGrad(X, y, B), grads: {}};
  net.order.forEach(n => { out.grads[n] = Array.from(net.grads[n]); });
  return out;
}"""


def _loss_and_grads(net, X, y) -> tuple[float, dict]:
    import torch.nn.functional as F

    net.train().zero_grad()
    loss = F.cross_entropy(net(X), y)                  # the Trainer's loss (skipnet.train._loss_and_acc)
    loss.backward()
    return loss.item(), {n: p.grad.numpy().ravel().copy() for n, p in net.named_parameters()}


@pytest.mark.parametrize("blocks", [10, 20])
def test_browser_gradient_of_a_deep_plain_net_is_as_exact_as_float32_allows(lab_page, blocks, capsys):
    """From the package's weights and one batch, the browser's loss and gradients are no further from the exact
    (float64) values than torch's own float32 ones, up to a factor of 2: the plain net's exploding gradients make
    float32 itself inexact here, so "float32 tolerance" is measured, not assumed."""
    import copy

    ds = load_digits(flatten=True)
    net = build_model(lab_model(blocks, False), seed=0)
    idx = torch.randperm(len(ds.X_train), generator=torch.Generator().manual_seed(7))[:LAB_TRAIN.batch_size]
    init = {n: t.detach().numpy().ravel().tolist() for n, t in net.state_dict().items()
            if not n.endswith("num_batches_tracked")}
    l64, g64 = _loss_and_grads(copy.deepcopy(net).double(), ds.X_train[idx].double(), ds.y_train[idx])
    l32, g32 = _loss_and_grads(net, ds.X_train[idx], ds.y_train[idx])
    js = lab_page.evaluate(JS_ONE_STEP, [blocks, init, idx.tolist()])
    err_js = max([abs(js["loss"] - l64) / l64] + [_rel(js["grads"][n], g64[n]) for n in g64])
    err_32 = max([abs(l32 - l64) / l64] + [_rel(g32[n], g64[n]) for n in g64])
    with capsys.disabled():
        print(f"\n  plain {blocks} blocks, one step: largest relative difference from float64: browser {err_js:.2e}, "
              f"torch float32 {err_32:.2e} (largest gradient entry {max(np.abs(g).max() for g in g64.values()):.3g})")
    assert err_js <= 2 * err_32 + 1e-6
