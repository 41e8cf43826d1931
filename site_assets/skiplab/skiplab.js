/* skiplab.js: the book's MLP, plain and residual, trained side by side in the reader's browser (no kernel).
 *
 * A dependency-free port of skipnet's MLP (skipnet.models with arch="mlp", placement="pre", norm="batch"):
 *   stem: linear 64 -> width (no bias)
 *   block (x n_blocks):  F(x) = W2 relu(BN2(W1 relu(BN1(x))))      residual: x + F(x)      plain: F(x)
 *   readout: head(relu(BN(x))), head with a bias
 * BatchNorm uses the batch's statistics in training (and updates running ones, used for the final evaluation),
 * the loss is the mean softmax cross-entropy, and the optimizer is skipnet's SGD (momentum, Nesterov, weight
 * decay) with its warm-up and cosine schedule. Weights are He-normal as in skipnet (a seeded generator of its own).
 * Every tensor is a Float32Array; sums run in double precision and are rounded to float32 when stored.
 * The settings and the digits come from digits.js (generated from the package by scripts/export_skiplab.py).
 *
 * The same file is the page's widget and the Web Worker that trains (on a page opened from disk, where browsers
 * refuse workers, it trains on the page in short slices instead). tests/test_skiplab.py checks it against skipnet.
 */
(function (root) {
  "use strict";

  // ------------------------------------------------------------------------------------------ random numbers
  function mulberry32(seed) {
    var a = seed >>> 0;
    return function () {
      a = (a + 0x6d2b79f5) >>> 0;
      var t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  function gaussian(rand) {                                   // Box-Muller
    var u = 1 - rand(), v = rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  // ------------------------------------------------------------------------------------------------ the digits
  function decodeDigits(D) {
    var d = D.digits, F = D.model.in_features, mean = Math.fround(d.mean), std = Math.fround(d.std);
    function part(levels, labels) {
      var n = labels.length, X = new Float32Array(n * F), y = new Int32Array(n);
      // float32 arithmetic as numpy's (levels - mean) / std: each operation rounded to float32
      for (var k = 0; k < n * F; k++) X[k] = Math.fround(levels.charCodeAt(k) - 97 - mean) / std;
      for (var i = 0; i < n; i++) y[i] = labels.charCodeAt(i) - 48;
      return { X: X, y: y, n: n };
    }
    return { train: part(d.train_levels, d.train_labels), test: part(d.test_levels, d.test_labels), F: F };
  }

  // ------------------------------------------------------------------------------------------------ layers
  // Linear maps store W as (out, in), row-major, like torch: y = x W^T (+ b). Two ways to the same product: as
  // dot products (dense inputs: the digits), or row by row skipping zero inputs (the ReLU outputs every block layer
  // reads, about half zeros). Inner loops are unrolled by four (widths here are multiples of four; others take the
  // plain loop). Products are summed in double precision and stored as float32.
  function transpose(W, nOut, nIn) {
    var T = new Float32Array(nIn * nOut);
    for (var j = 0; j < nOut; j++) for (var i = 0; i < nIn; i++) T[i * nOut + j] = W[j * nIn + i];
    return T;
  }
  function dot(a, ao, b, bo, n) {
    var s0 = 0, s1 = 0, s2 = 0, s3 = 0, i = 0, n4 = n & ~3;
    for (; i < n4; i += 4) {
      s0 += a[ao + i] * b[bo + i]; s1 += a[ao + i + 1] * b[bo + i + 1];
      s2 += a[ao + i + 2] * b[bo + i + 2]; s3 += a[ao + i + 3] * b[bo + i + 3];
    }
    for (; i < n; i++) s0 += a[ao + i] * b[bo + i];
    return (s0 + s1) + (s2 + s3);
  }
  // acc[ao .. ao+n) += g * v[vo .. vo+n)
  function axpy(acc, ao, g, v, vo, n) {
    var i = 0, n4 = n & ~3;
    for (; i < n4; i += 4) {
      acc[ao + i] += g * v[vo + i]; acc[ao + i + 1] += g * v[vo + i + 1];
      acc[ao + i + 2] += g * v[vo + i + 2]; acc[ao + i + 3] += g * v[vo + i + 3];
    }
    for (; i < n; i++) acc[ao + i] += g * v[vo + i];
  }
  function linear(x, B, nIn, W, nOut, b) {
    var y = new Float32Array(B * nOut);
    for (var n = 0; n < B; n++) {
      for (var j = 0; j < nOut; j++) y[n * nOut + j] = (b ? b[j] : 0) + dot(x, n * nIn, W, j * nIn, nIn);
    }
    return y;
  }
  function linearSparse(x, B, nIn, W, nOut) {             // the same product, for inputs with many zeros
    var y = new Float32Array(B * nOut), WT = transpose(W, nOut, nIn), row = new Float64Array(nOut);
    for (var n = 0; n < B; n++) {
      row.fill(0);
      for (var i = 0; i < nIn; i++) {
        var a = x[n * nIn + i];
        if (a !== 0) axpy(row, 0, a, WT, i * nOut, nOut);
      }
      y.set(row, n * nOut);
    }
    return y;
  }
  // dW = dy^T x (written into dW), db = sum over the batch of dy, and dx = dy W when wanted
  function linearBack(dy, x, B, nIn, W, nOut, dW, db, wantDx) {
    var accT = new Float64Array(nIn * nOut), n, i, j;          // dW transposed: (in, out)
    for (n = 0; n < B; n++) {
      for (i = 0; i < nIn; i++) {
        var a = x[n * nIn + i];
        if (a !== 0) axpy(accT, i * nOut, a, dy, n * nOut, nOut);
      }
    }
    for (j = 0; j < nOut; j++) for (i = 0; i < nIn; i++) dW[j * nIn + i] = accT[i * nOut + j];
    if (db) {
      for (j = 0; j < nOut; j++) {
        var s = 0;
        for (n = 0; n < B; n++) s += dy[n * nOut + j];
        db[j] = s;
      }
    }
    if (!wantDx) return null;
    var dx = new Float32Array(B * nIn), WT = transpose(W, nOut, nIn);
    for (n = 0; n < B; n++) for (i = 0; i < nIn; i++) dx[n * nIn + i] = dot(dy, n * nOut, WT, i * nOut, nOut);
    return dx;
  }
  // BatchNorm1d in training: normalize by the batch's mean and (biased) variance, update the running statistics
  // with the unbiased variance, as torch does.
  function bnTrain(x, B, C, bn, eps, momentum) {
    var y = new Float32Array(B * C), xhat = new Float32Array(B * C), invstd = new Float64Array(C), c, n;
    for (c = 0; c < C; c++) {
      var s = 0;
      for (n = 0; n < B; n++) s += x[n * C + c];
      var mu = s / B, v = 0;
      for (n = 0; n < B; n++) { var d = x[n * C + c] - mu; v += d * d; }
      v /= B;
      var is = 1 / Math.sqrt(v + eps), g = bn.weight[c], b = bn.bias[c];
      invstd[c] = is;
      for (n = 0; n < B; n++) {
        var h = (x[n * C + c] - mu) * is;
        xhat[n * C + c] = h;
        y[n * C + c] = g * h + b;
      }
      bn.running_mean[c] = (1 - momentum) * bn.running_mean[c] + momentum * mu;
      bn.running_var[c] = (1 - momentum) * bn.running_var[c] + momentum * v * B / (B - 1);
    }
    return { y: y, xhat: xhat, invstd: invstd };
  }
  function bnEval(x, B, C, bn, eps) {
    var y = new Float32Array(B * C);
    for (var c = 0; c < C; c++) {
      var is = 1 / Math.sqrt(bn.running_var[c] + eps), m = bn.running_mean[c], g = bn.weight[c], b = bn.bias[c];
      for (var n = 0; n < B; n++) y[n * C + c] = (x[n * C + c] - m) * is * g + b;
    }
    return y;
  }
  function bnBack(dy, cache, B, C, bn, dg, db) {
    var dx = new Float32Array(B * C), xhat = cache.xhat;
    for (var c = 0; c < C; c++) {
      var sdy = 0, sdyx = 0, n;
      for (n = 0; n < B; n++) { var g = dy[n * C + c]; sdy += g; sdyx += g * xhat[n * C + c]; }
      dg[c] = sdyx;
      db[c] = sdy;
      var k = bn.weight[c] * cache.invstd[c] / B;
      for (n = 0; n < B; n++) dx[n * C + c] = k * (B * dy[n * C + c] - sdy - xhat[n * C + c] * sdyx);
    }
    return dx;
  }
  function relu(x) {
    var y = new Float32Array(x.length);
    for (var k = 0; k < x.length; k++) y[k] = x[k] > 0 ? x[k] : 0;
    return y;
  }
  function reluBack(dy, x) {                                  // the gradient passes where the input was positive
    var dx = new Float32Array(x.length);
    for (var k = 0; k < x.length; k++) dx[k] = x[k] > 0 ? dy[k] : 0;
    return dx;
  }

  // ------------------------------------------------------------------------------------------------ the network
  // Parameters and buffers are named as in skipnet's state_dict, so weights can be exchanged with the package.
  function Net(model, nBlocks, residual, seed) {
    var W = model.width, F = model.in_features, C = model.n_classes, rand = mulberry32(seed), self = this;
    this.model = model; this.nBlocks = nBlocks; this.residual = residual;
    this.params = {}; this.order = []; this.buffers = {};
    function param(name, size, std) {
      var a = new Float32Array(size);
      if (std === "one") a.fill(1);
      else if (std) for (var k = 0; k < size; k++) a[k] = std * gaussian(rand);
      self.params[name] = a; self.order.push(name);
      return a;
    }
    function norm(prefix) {
      var rm = new Float32Array(W), rv = new Float32Array(W).fill(1);
      self.buffers[prefix + ".running_mean"] = rm; self.buffers[prefix + ".running_var"] = rv;
      return { weight: param(prefix + ".weight", W, "one"), bias: param(prefix + ".bias", W, 0),
               running_mean: rm, running_var: rv, prefix: prefix };
    }
    var he = function (fanIn) { return Math.sqrt(2 / fanIn); };  // kaiming_normal_(nonlinearity="relu"), fan_in
    this.stem = param("stem.weight", W * F, he(F));
    this.blocks = [];
    for (var i = 0; i < nBlocks; i++) {
      var p = "blocks." + i + ".branch.";
      var w0 = param(p + "weights.0.weight", W * W, he(W)), w1 = param(p + "weights.1.weight", W * W, he(W));
      this.blocks.push({ w: [w0, w1], prefix: p, norms: [norm(p + "norms.0"), norm(p + "norms.1")] });
    }
    this.finalNorm = norm("final_norm");
    this.head = param("head.weight", C * W, he(W));
    this.headBias = param("head.bias", C, 0);
    this.grads = {};
    this.order.forEach(function (n) { self.grads[n] = new Float32Array(self.params[n].length); });
    this.steps = 0;
  }
  // Forward and backward on one batch (training mode): fills this.grads and returns the mean cross-entropy.
  Net.prototype.lossAndGrad = function (X, y, B) {
    var m = this.model, W = m.width, F = m.in_features, C = m.n_classes, eps = m.bn_eps, mom = m.bn_momentum;
    var g = this.grads, caches = [], h = linear(X, B, F, this.stem, W), i, blk;
    for (i = 0; i < this.nBlocks; i++) {                                   // the stream h: (B, W)
      blk = this.blocks[i];
      var n1 = bnTrain(h, B, W, blk.norms[0], eps, mom), r1 = relu(n1.y), z1 = linearSparse(r1, B, W, blk.w[0], W);
      var n2 = bnTrain(z1, B, W, blk.norms[1], eps, mom), r2 = relu(n2.y), z2 = linearSparse(r2, B, W, blk.w[1], W);
      caches.push({ n1: n1, r1: r1, n2: n2, r2: r2 });
      if (this.residual) for (var k = 0; k < z2.length; k++) z2[k] += h[k];   // x + F(x)
      h = z2;
    }
    var nf = bnTrain(h, B, W, this.finalNorm, eps, mom), rf = relu(nf.y);
    var logits = linear(rf, B, W, this.head, C, this.headBias);          // (B, C)
    var loss = 0, dlogits = new Float32Array(B * C);
    for (var n = 0; n < B; n++) {                                         // softmax cross-entropy, mean over B
      var o = n * C, mx = -Infinity, s = 0, c;
      for (c = 0; c < C; c++) mx = Math.max(mx, logits[o + c]);
      for (c = 0; c < C; c++) s += Math.exp(logits[o + c] - mx);
      loss += mx + Math.log(s) - logits[o + y[n]];
      for (c = 0; c < C; c++) dlogits[o + c] = (Math.exp(logits[o + c] - mx) / s - (c === y[n] ? 1 : 0)) / B;
    }
    loss /= B;
    var dh = linearBack(dlogits, rf, B, W, this.head, C, g["head.weight"], g["head.bias"], true);
    dh = bnBack(reluBack(dh, nf.y), nf, B, W, this.finalNorm, g["final_norm.weight"], g["final_norm.bias"]);
    for (i = this.nBlocks - 1; i >= 0; i--) {
      blk = this.blocks[i];
      var c2 = caches[i], p = blk.prefix;
      var dr2 = linearBack(dh, c2.r2, B, W, blk.w[1], W, g[p + "weights.1.weight"], null, true);
      var dz1 = bnBack(reluBack(dr2, c2.n2.y), c2.n2, B, W, blk.norms[1], g[p + "norms.1.weight"], g[p + "norms.1.bias"]);
      var dr1 = linearBack(dz1, c2.r1, B, W, blk.w[0], W, g[p + "weights.0.weight"], null, true);
      var dx = bnBack(reluBack(dr1, c2.n1.y), c2.n1, B, W, blk.norms[0], g[p + "norms.0.weight"], g[p + "norms.0.bias"]);
      if (this.residual) for (var q = 0; q < dx.length; q++) dx[q] += dh[q];   // the shortcut's gradient
      dh = dx;
    }
    linearBack(dh, X, B, F, this.stem, W, g["stem.weight"], null, false);
    return loss;
  };
  // torch.optim.SGD: d = g + wd p; buf = d (first step) or momentum buf + d; Nesterov: d + momentum buf; p -= lr d
  Net.prototype.sgdStep = function (lr, t) {
    if (!this.slots) {
      this.slots = [];
      for (var q = 0; q < this.order.length; q++) {
        var nm = this.order[q];
        this.slots.push({ p: this.params[nm], g: this.grads[nm], buf: new Float32Array(this.params[nm].length) });
      }
    }
    var first = this.steps === 0, mu = t.momentum, wd = t.weight_decay, nest = t.nesterov;
    for (var s = 0; s < this.slots.length; s++) sgdUpdate(this.slots[s], lr, mu, wd, nest, first);
    this.steps++;
  };
  function sgdUpdate(slot, lr, mu, wd, nest, first) {
    var p = slot.p, gr = slot.g, buf = slot.buf, n = p.length;
    for (var k = 0; k < n; k++) {
      var d = Math.fround(gr[k] + wd * p[k]);
      var b = first ? d : Math.fround(mu * buf[k] + d);
      buf[k] = b;
      p[k] = p[k] - lr * (nest ? Math.fround(d + mu * b) : b);
    }
  }
  // Evaluation mode (running statistics): mean cross-entropy and accuracy over a whole set.
  Net.prototype.evaluate = function (set) {
    var m = this.model, W = m.width, C = m.n_classes, eps = m.bn_eps;
    var h = linear(set.X, set.n, m.in_features, this.stem, W);
    for (var i = 0; i < this.nBlocks; i++) {
      var blk = this.blocks[i];
      var z1 = linearSparse(relu(bnEval(h, set.n, W, blk.norms[0], eps)), set.n, W, blk.w[0], W);
      var z2 = linearSparse(relu(bnEval(z1, set.n, W, blk.norms[1], eps)), set.n, W, blk.w[1], W);
      if (this.residual) for (var k = 0; k < z2.length; k++) z2[k] += h[k];
      h = z2;
    }
    var logits = linear(relu(bnEval(h, set.n, W, this.finalNorm, eps)), set.n, W, this.head, C, this.headBias);
    var loss = 0, correct = 0;
    for (var n = 0; n < set.n; n++) {
      var o = n * C, mx = -Infinity, s = 0, best = 0, c;
      for (c = 0; c < C; c++) { if (logits[o + c] > mx) { mx = logits[o + c]; best = c; } }
      for (c = 0; c < C; c++) s += Math.exp(logits[o + c] - mx);
      loss += mx + Math.log(s) - logits[o + set.y[n]];
      if (best === set.y[n]) correct++;
    }
    return { loss: loss / set.n, acc: correct / set.n };
  };
  Net.prototype.load = function (state) {                    // weights (and buffers) named as in state_dict
    var self = this;
    Object.keys(state).forEach(function (name) {
      var dst = self.params[name] || self.buffers[name];
      if (!dst) throw new Error("unknown tensor " + name);
      if (dst.length !== state[name].length) throw new Error(name + ": size " + state[name].length);
      dst.set(state[name]);
    });
  };

  // skipnet.train.TrainConfig.lr_at: linear warm-up to lr, then cosine to 0 (or constant)
  function lrAt(t, step, total) {
    if (step < t.warmup_steps) return t.lr * (step + 1) / t.warmup_steps;
    if (t.schedule === "constant") return t.lr;
    var u = (step - t.warmup_steps) / Math.max(1, total - t.warmup_steps);
    return 0.5 * t.lr * (1 + Math.cos(Math.PI * Math.min(1, u)));
  }

  // ------------------------------------------------------------------------------------------------ the race
  // Plain and residual nets of one depth from the same seed (the same initial weights), the same batches, one step
  // of each in turn, as skipnet.race does. Epochs of len(train) // batch steps over a seeded permutation.
  function Race(D, nBlocks, seed, digits) {
    this.D = D; this.t = D.train; this.digits = digits || decodeDigits(D);
    var n = this.digits.train.n;
    this.B = this.t.batch_size; this.perEpoch = Math.max(1, Math.floor(n / this.B));
    this.total = this.t.epochs * this.perEpoch;
    this.nets = { plain: new Net(D.model, nBlocks, false, seed), residual: new Net(D.model, nBlocks, true, seed) };
    this.loss = { plain: [], residual: [] };
    this.diverged = { plain: null, residual: null };
    this.rand = mulberry32(seed + 0x5eed); this.order = null; this.step = 0;
    this.Xb = new Float32Array(this.B * D.model.in_features); this.yb = new Int32Array(this.B);
  }
  Race.prototype.done = function () { return this.step >= this.total; };
  Race.prototype.next = function () {
    var set = this.digits.train, F = this.D.model.in_features, k = this.step % this.perEpoch, i;
    if (k === 0) {                                             // a fresh permutation each epoch (Fisher-Yates)
      this.order = new Int32Array(set.n);
      for (i = 0; i < set.n; i++) this.order[i] = i;
      for (i = set.n - 1; i > 0; i--) {
        var j = Math.floor(this.rand() * (i + 1)), tmp = this.order[i];
        this.order[i] = this.order[j]; this.order[j] = tmp;
      }
    }
    for (i = 0; i < this.B; i++) {
      var e = this.order[k * this.B + i];
      this.Xb.set(set.X.subarray(e * F, (e + 1) * F), i * F);
      this.yb[i] = set.y[e];
    }
    var lr = lrAt(this.t, this.step, this.total), self = this;
    ["plain", "residual"].forEach(function (kind) {
      if (self.diverged[kind] !== null) return;
      var net = self.nets[kind], loss = net.lossAndGrad(self.Xb, self.yb, self.B);
      if (!isFinite(loss)) { self.diverged[kind] = self.step + 1; return; }   // a result, not a crash
      net.sgdStep(lr, self.t);
      self.loss[kind].push(loss);
    });
    this.step++;
  };
  Race.prototype.results = function () {
    var out = {}, self = this;
    ["plain", "residual"].forEach(function (kind) {
      var net = self.nets[kind];
      out[kind] = self.diverged[kind] !== null ? { diverged: self.diverged[kind] } :
        { train: net.evaluate(self.digits.train), test: net.evaluate(self.digits.test) };
    });
    return out;
  };

  var api = { version: 1, mulberry32: mulberry32, decodeDigits: decodeDigits, Net: Net, lrAt: lrAt, Race: Race };
  root.SkipLab = api;

  // ------------------------------------------------------------------------------------------------ the worker
  if (typeof document === "undefined") {
    root.onmessage = function (ev) {
      var msg = ev.data;
      if (msg.type !== "train") return;
      var race = new Race(msg.data, msg.blocks, msg.seed), t0 = Date.now();
      while (!race.done()) {
        race.next();
        root.postMessage({ type: "step", step: race.step, total: race.total,
                           plain: race.loss.plain[race.loss.plain.length - 1],
                           residual: race.loss.residual[race.loss.residual.length - 1] });
      }
      root.postMessage({ type: "done", results: race.results(), ms: Date.now() - t0 });
    };
    return;
  }

  // ------------------------------------------------------------------------------------------------ the widget
  var scriptUrl = document.currentScript && document.currentScript.src;
  var COLORS = { plain: "#ff7f0e", residual: "#2ca02c" };      // the book's figures: plain orange, residual green
  var CSS = [
    ".skiplab-app{display:flex;flex-direction:column;gap:.5rem;margin:.5rem 0}",
    ".skiplab-controls{display:flex;flex-wrap:wrap;align-items:center;gap:.6rem}",
    ".skiplab-controls button{padding:.2rem .9rem;border:1px solid currentColor;border-radius:4px;" +
      "background:transparent;color:inherit;cursor:pointer}",
    ".skiplab-controls button:disabled{opacity:.45;cursor:default}",
    ".skiplab-controls select{color:inherit;background:transparent}",
    ".skiplab-controls select option{color:#222}",
    ".skiplab-controls progress{width:10rem}",
    ".skiplab canvas{width:100%;max-width:720px;height:auto;border:1px solid rgba(128,128,128,.4);border-radius:4px}",
    ".skiplab-settings,.skiplab-status{font-size:.85em;opacity:.85}",
    ".skiplab-results{display:flex;flex-wrap:wrap;gap:1.2rem;font-size:.9em}",
    ".skiplab-results output::before{content:'';display:inline-block;width:.8em;height:.8em;margin-right:.35em;" +
      "border-radius:2px;background:var(--skiplab-color)}",
  ].join("\n");

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(x) { return x >= 0.1 ? x.toFixed(2) : x.toPrecision(2); }

  function settingsText(D) {
    var t = D.train, m = D.model, n = D.digits.train_labels.length, per = Math.max(1, Math.floor(n / t.batch_size));
    return "Each net: width " + m.width + ", two linear layers a block. SGD" + (t.nesterov ? " (Nesterov" : " (") +
      " momentum " + t.momentum + ", weight decay " + t.weight_decay + "), learning rate " + t.lr + " after a " +
      t.warmup_steps + "-step warm-up, then " + t.schedule + "; batches of " + t.batch_size + ", " + t.epochs +
      " epochs = " + t.epochs * per + " steps over " + n.toLocaleString("en") + " training digits.";
  }

  function Lab(fig, D) {
    this.fig = fig; this.D = D; this.worker = null; this.timer = null;
    var app = fig.querySelector(".skiplab-app") || fig.appendChild(el("div", { "class": "skiplab-app" }));
    app.textContent = "";
    var controls = app.appendChild(el("div", { "class": "skiplab-controls" }));
    var label = controls.appendChild(el("label", {}, "Blocks "));
    this.select = label.appendChild(el("select", { "class": "skiplab-blocks", "aria-label": "number of blocks" }));
    D.blocks.forEach(function (b) {
      var o = el("option", { value: String(b) }, String(b));
      if (b === D.default_blocks) o.selected = true;
      this.select.appendChild(o);
    }, this);
    this.trainBtn = controls.appendChild(el("button", { type: "button", "class": "skiplab-train" }, "Train"));
    this.stopBtn = controls.appendChild(el("button", { type: "button", "class": "skiplab-stop" }, "Stop"));
    this.stopBtn.disabled = true;
    this.progress = controls.appendChild(el("progress", { "class": "skiplab-progress", max: "1", value: "0" }));
    this.status = controls.appendChild(el("span", { "class": "skiplab-status", role: "status" }, "ready"));
    this.canvas = app.appendChild(el("canvas", { width: "720", height: "300", role: "img",
      "aria-label": "training loss of the plain and the residual network against the step, log scale" }));
    var res = app.appendChild(el("div", { "class": "skiplab-results" }));
    this.out = {};
    ["plain", "residual"].forEach(function (kind) {
      var o = res.appendChild(el("output", { "class": "skiplab-final", "data-net": kind }, kind + ": not trained yet"));
      o.style.setProperty("--skiplab-color", COLORS[kind]);
      this.out[kind] = o;
    }, this);
    app.appendChild(el("div", { "class": "skiplab-settings" }, settingsText(D)));
    var self = this;
    this.trainBtn.addEventListener("click", function () { self.start(); });
    this.stopBtn.addEventListener("click", function () { self.stop(); });
    fig.dataset.state = "idle";
    this.curves = { plain: [], residual: [] }; this.total = 0;
    fig.skiplab = this;
    this.draw();
  }
  Lab.prototype.start = function () {
    this.stop(true);
    var blocks = parseInt(this.select.value, 10), self = this;
    this.curves = { plain: [], residual: [] }; this.total = 0; this.t0 = performance.now();
    this.fig.dataset.state = "running"; this.fig.dataset.blocks = String(blocks);
    delete this.fig.dataset.seconds;
    ["plain", "residual"].forEach(function (k) {
      var o = self.out[k];
      o.textContent = k + " MLP, " + blocks + " blocks: training"; delete o.dataset.trainLoss;
      delete o.dataset.testAcc; delete o.dataset.diverged;
    });
    this.trainBtn.disabled = true; this.stopBtn.disabled = false; this.select.disabled = true;
    var onMsg = function (msg) {
      if (msg.type === "step") self.onStep(msg);
      else if (msg.type === "done") self.onDone(msg);
    };
    try {
      if (!scriptUrl || location.protocol === "file:") throw new Error("no worker from a file: page");
      this.worker = new Worker(scriptUrl);
      this.worker.onmessage = function (ev) { onMsg(ev.data); };
      this.worker.onerror = function (e) { self.fail(e.message || "the worker failed"); };
      this.worker.postMessage({ type: "train", data: this.D, blocks: blocks, seed: this.D.seed });
      this.fig.dataset.engine = "worker";
    } catch (e) {
      // A page opened from disk: no worker. Train here in slices of about 30 ms, so the page stays responsive.
      this.worker = null; this.fig.dataset.engine = "page";
      var race = new Race(this.D, blocks, this.D.seed, this.digits || (this.digits = decodeDigits(this.D)));
      var slice = function () {
        var until = performance.now() + 30;
        while (!race.done() && performance.now() < until) {
          race.next();
          onMsg({ type: "step", step: race.step, total: race.total,
                  plain: race.loss.plain[race.loss.plain.length - 1],
                  residual: race.loss.residual[race.loss.residual.length - 1] });
        }
        if (race.done()) { self.timer = null; onMsg({ type: "done", results: race.results() }); }
        else self.timer = setTimeout(slice, 0);
      };
      this.timer = setTimeout(slice, 0);
    }
  };
  Lab.prototype.onStep = function (msg) {
    this.total = msg.total;
    if (msg.plain !== undefined && this.curves.plain.length < msg.step) this.curves.plain.push(msg.plain);
    if (msg.residual !== undefined && this.curves.residual.length < msg.step) this.curves.residual.push(msg.residual);
    this.progress.max = msg.total; this.progress.value = msg.step;
    this.status.textContent = "step " + msg.step + " of " + msg.total;
    this.fig.dataset.step = String(msg.step);
    this.scheduleDraw();
  };
  Lab.prototype.onDone = function (msg) {
    this.release();
    var secs = (performance.now() - this.t0) / 1000, blocks = this.fig.dataset.blocks, self = this;
    this.fig.dataset.seconds = secs.toFixed(2);
    ["plain", "residual"].forEach(function (k) {
      var r = msg.results[k], o = self.out[k];
      if (r.diverged) {
        o.dataset.diverged = String(r.diverged);
        o.textContent = k + " MLP, " + blocks + " blocks: diverged at step " + r.diverged;
        return;
      }
      o.dataset.trainLoss = String(r.train.loss); o.dataset.testAcc = String(r.test.acc);
      o.textContent = k + " MLP, " + blocks + " blocks: training loss " + fmt(r.train.loss) +
        ", test accuracy " + (100 * r.test.acc).toFixed(1) + " %";
    });
    this.status.textContent = "done in " + secs.toFixed(1) + " s";
    this.fig.dataset.state = "done";
    this.draw();
  };
  Lab.prototype.fail = function (text) {
    this.release();
    this.status.textContent = "failed: " + text;
    this.fig.dataset.state = "failed";
  };
  Lab.prototype.release = function () {
    if (this.worker) { this.worker.terminate(); this.worker = null; }
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    this.trainBtn.disabled = false; this.stopBtn.disabled = true; this.select.disabled = false;
  };
  Lab.prototype.stop = function (quiet) {
    var running = this.fig.dataset.state === "running";
    this.release();
    if (running && !quiet) {
      this.fig.dataset.state = "stopped";
      this.status.textContent = "stopped at step " + (this.fig.dataset.step || 0) + " of " + this.total;
      this.draw();
    }
  };
  Lab.prototype.scheduleDraw = function () {
    if (this.pending) return;
    var self = this;
    this.pending = true;
    (window.requestAnimationFrame || setTimeout)(function () { self.pending = false; self.draw(); });
  };
  // Loss against step, log scale, both curves; the axes in the page's text color (light and dark themes).
  Lab.prototype.draw = function () {
    var cv = this.canvas, ctx = cv.getContext("2d"), Wd = cv.width, Ht = cv.height;
    var ink = getComputedStyle(this.fig).color || "#333";
    var L = 52, R = 12, T = 12, Bm = 34, total = Math.max(this.total, 1), self = this;
    ctx.clearRect(0, 0, Wd, Ht);
    var lo = Infinity, hi = -Infinity;
    ["plain", "residual"].forEach(function (k) {
      self.curves[k].forEach(function (v) { if (v > 0 && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
    });
    if (!isFinite(lo)) { lo = 0.01; hi = 3; }
    var e0 = Math.floor(Math.log10(lo)), e1 = Math.ceil(Math.log10(hi));
    if (e1 <= e0) e1 = e0 + 1;
    var X = function (s) { return L + (Wd - L - R) * s / total; };
    var Y = function (v) { return T + (Ht - T - Bm) * (e1 - Math.log10(v)) / (e1 - e0); };
    ctx.font = "12px sans-serif"; ctx.fillStyle = ink; ctx.strokeStyle = ink; ctx.lineWidth = 1;
    ctx.globalAlpha = 0.25;
    for (var e = e0; e <= e1; e++) { ctx.beginPath(); ctx.moveTo(L, Y(Math.pow(10, e))); ctx.lineTo(Wd - R, Y(Math.pow(10, e))); ctx.stroke(); }
    ctx.globalAlpha = 1;
    ctx.beginPath(); ctx.moveTo(L, T); ctx.lineTo(L, Ht - Bm); ctx.lineTo(Wd - R, Ht - Bm); ctx.stroke();
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (e = e0; e <= e1; e++) ctx.fillText(String(Number(Math.pow(10, e).toPrecision(1))), L - 6, Y(Math.pow(10, e)));
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    ctx.fillText(this.total ? "step (of " + this.total + ")" : "step", (L + Wd - R) / 2, Ht - Bm + 16);
    ctx.fillText("0", X(0), Ht - Bm + 3);
    ctx.textAlign = "right";
    if (this.total) ctx.fillText(String(this.total), X(this.total), Ht - Bm + 3);
    ctx.textAlign = "center";
    ctx.save(); ctx.translate(14, (T + Ht - Bm) / 2); ctx.rotate(-Math.PI / 2);
    ctx.fillText("training loss (batch)", 0, -6); ctx.restore();
    ctx.lineWidth = 1.6;
    ["plain", "residual"].forEach(function (k, i) {
      var c = self.curves[k];
      ctx.strokeStyle = COLORS[k]; ctx.beginPath();
      for (var s = 0; s < c.length; s++) { var v = Math.max(c[s], Math.pow(10, e0)); if (s) ctx.lineTo(X(s + 1), Y(v)); else ctx.moveTo(X(s + 1), Y(v)); }
      ctx.stroke();
      ctx.fillStyle = COLORS[k]; ctx.fillRect(Wd - R - 110, T + 6 + 18 * i, 14, 3);
      ctx.fillStyle = ink; ctx.textAlign = "left"; ctx.textBaseline = "middle";
      ctx.fillText(k, Wd - R - 90, T + 8 + 18 * i);
    });
  };

  function init() {
    var D = root.SKIPLAB_DATA;
    if (!document.getElementById("skiplab-style")) {
      var style = el("style", { id: "skiplab-style" }, CSS);
      document.head.appendChild(style);
    }
    document.querySelectorAll("figure.skiplab").forEach(function (fig) {
      if (fig.skiplab) return;
      if (!D) { fig.querySelector(".skiplab-app").textContent = "The lab's data (digits.js) did not load."; return; }
      new Lab(fig, D);
    });
  }
  api.Lab = Lab;
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})(typeof self !== "undefined" ? self : this);
