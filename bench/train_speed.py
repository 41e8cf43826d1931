"""Training speed: the package's loop against a tutorial-style loop and against the machine's matmul peak.

* ``trainer``: images/s of :class:`skipnet.train.Trainer` on ResNet-20 (width 16, digits) against
  the loop most tutorials write (``DataLoader`` over a ``TensorDataset``, ``.item()`` every step,
  torch's default thread count, default optimizer settings, NCHW), same model, batch and steps,
  in alternating rounds. The same tutorial loop on one thread and a minimal loop (pre-built
  batches, no host syncs) are measured beside them to say where the difference comes from.
* ``step_fraction_of_matmul_peak``: the Trainer's achieved FLOP/s (convolution and linear FLOPs of
  one forward, times 3 for a training step) over the fp32 matmul FLOP/s torch reaches on one thread.
* ``vectorized``: :class:`vectorized.VectorizedTrainer` (K seeds in one pass) against K
  Trainers stepped in turn.
"""
from __future__ import annotations

import copy
import itertools
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from benchlib import RESNET20, interleaved, sync, threads
from skipnet.data import load_digits
from skipnet.models import ModelConfig, build_model
from skipnet.train import TrainConfig, Trainer, make_optimizer
from vectorized import VectorizedTrainer


# -- FLOPs and the matmul peak --------------------------------------------------------------------
def forward_flops_per_image(cfg: ModelConfig = RESNET20) -> int:
    """Multiply-add FLOPs (2 per MAC) of the convolution and linear layers in one forward of one image."""
    net = build_model(cfg, seed=0).eval()
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            total += 2 * out.numel() * k
        elif isinstance(mod, nn.Linear):
            total += 2 * out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net(torch.zeros(1, *cfg.in_shape))
    for h in handles:
        h.remove()
    return total


def counted_train_flops_per_image(cfg: ModelConfig = RESNET20, batch: int = 8) -> float:
    """Cross-check: torch's own FLOP counter over one forward and backward (no input gradient is needed)."""
    from torch.utils.flop_counter import FlopCounterMode
    net = build_model(cfg, seed=0).train()
    X = torch.randn(batch, *cfg.in_shape)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(X), torch.zeros(batch, dtype=torch.long)).backward()
    return counter.get_total_flops() / batch


def matmul_peak(device: torch.device, quick: bool = False) -> dict:
    """Best fp32 matmul FLOP/s over a few square sizes (one thread on the CPU; TF32 off on a GPU)."""
    cuda = device.type == "cuda"
    sizes = (2048, 4096, 8192) if cuda else (256, 512, 1024)
    reps = 3 if quick else 5
    best, per_size = 0.0, {}
    if cuda:
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for n in sizes:
            a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
            a @ b
            sync(device)
            inner = max(1, int(2e9 / (2 * n ** 3))) if not cuda else 10
            rate = 0.0
            for _ in range(reps):
                t0 = time.perf_counter()
                for _ in range(inner):
                    a @ b
                sync(device)
                rate = max(rate, inner * 2 * n ** 3 / (time.perf_counter() - t0))
            per_size[n] = rate
            best = max(best, rate)
    finally:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = tf32
    return {"flops_per_s": best, "per_size": {str(k): round(v / 1e9, 1) for k, v in per_size.items()}}


# -- the loops -------------------------------------------------------------------------------------
def package_loop(data, batch: int, steps: int, device: torch.device):
    """The package's Trainer; one call = ``steps`` optimizer steps (its history, schedule and checks included)."""
    trainer = Trainer(build_model(RESNET20, seed=0), data, TrainConfig(batch_size=batch, steps=10 ** 6, seed=0),
                      device=device)

    def run(steps: int = steps) -> float:
        for _ in range(steps):
            trainer.step()
        sync(device)
        if trainer.history.diverged:
            raise RuntimeError(f"benchmark training {trainer.history.status}")
        return steps * batch

    return run


def tutorial_loop(data, batch: int, steps: int, device: torch.device, n_threads: int):
    """The loop tutorials write: DataLoader over a TensorDataset, .item() every step, default settings."""
    model = build_model(RESNET20, seed=0).to(device)
    loader = DataLoader(TensorDataset(data.X_train, data.y_train), batch_size=batch, shuffle=True, drop_last=True)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    stats = {"loss": 0.0, "correct": 0}

    def run(steps: int = steps) -> float:
        model.train()
        with threads(n_threads):
            for _ in range(steps):
                xb, yb = next(batches)
                xb, yb = xb.to(device), yb.to(device)
                optimizer.zero_grad()
                out = model(xb)
                loss = criterion(out, yb)
                loss.backward()
                optimizer.step()
                stats["loss"] += loss.item()
                stats["correct"] += (out.argmax(1) == yb).sum().item()
        return steps * batch

    return run


def minimal_loop(data, batch: int, steps: int, device: torch.device):
    """The least a loop can do: batches gathered in advance, channels_last, fused optimizer, no host sync."""
    fmt = torch.channels_last
    model = build_model(RESNET20, seed=0).to(device, memory_format=fmt).train()
    X = data.X_train.to(device).contiguous(memory_format=fmt)
    y = data.y_train.to(device)
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(X), generator=gen)[:batch * 8].view(8, batch).to(device)
    batches = [(X[i], y[i]) for i in order]
    optimizer = make_optimizer(TrainConfig(), list(model.parameters()))

    def run(steps: int = steps) -> float:
        for s in range(steps):
            xb, yb = batches[s % len(batches)]
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)
        return steps * batch

    return run


def matmul_loop(device: torch.device, n: int, flops_per_call: float):
    """fp32 ``n x n`` matmuls worth about ``flops_per_call`` FLOPs a call, for the SAME rounds as the loops:
    a peak taken in short bursts would overstate what a seconds-long training can get on a shared CPU."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    per = 2 * n ** 3
    cuda = device.type == "cuda"

    def run(steps: int | None = None) -> float:
        k = 1 if steps is not None and steps <= 3 else max(1, round(flops_per_call / per))
        if cuda:
            tf32, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, False
        try:
            for _ in range(k):
                a @ b
            sync(device)
        finally:
            if cuda:
                torch.backends.cuda.matmul.allow_tf32 = tf32
        return k * per

    return run


BUCKETS = (("convolution", ("convolution",)), ("batch norm", ("batch_norm",)),
           ("relu", ("relu", "threshold", "clamp_min")), ("optimizer", ("sgd", "adam", "optimizer")),
           ("loss", ("log_softmax", "nll_loss", "cross_entropy")))


def step_breakdown(run, steps: int = 6) -> dict:
    """Share of the package step's CPU time per kind of operation (torch profiler, self time)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(steps)
    totals: dict[str, float] = {}
    for evt in prof.key_averages():
        name = evt.key.lower()
        bucket = next((b for b, keys in BUCKETS if any(k in name for k in keys)), "other")
        totals[bucket] = totals.get(bucket, 0.0) + evt.self_cpu_time_total / 1e6
    total = sum(totals.values())
    return {"steps": steps, "seconds": totals, "share": {k: v / total for k, v in totals.items()}}


def pair_package(data, batch: int, steps: int, device: torch.device):
    """The book's workload, a plain net and its residual twin, as the package trains them: side by side
    (:func:`skipnet.race.race`, one process per net on one thread each when there are two cores)."""
    from skipnet.race import race
    cfg = TrainConfig(batch_size=batch, steps=10 ** 6, seed=0)
    models = {k: build_model(RESNET20.with_(residual=k == "residual"), seed=0) for k in ("plain", "residual")}
    trainers = {k: Trainer(m, data, cfg, device=device) for k, m in models.items()}

    def run(steps: int = steps) -> float:
        for t in trainers.values():                 # a fresh budget of ``steps`` for each net, then race them
            t.total = t.history.steps_done + steps
        race(trainers)
        sync(device)
        return 2 * steps * batch

    return run


def pair_tutorial(data, batch: int, steps: int, device: torch.device, n_threads: int):
    """The same pair the tutorial way: one net after the other, each on torch's default threads."""
    loops = [tutorial_loop(data, batch, steps, device, n_threads) for _ in range(2)]

    def run(steps: int = steps) -> float:
        return sum(loop(steps) for loop in loops)

    return run


def pair_speedup(device: torch.device, default_threads: int, quick: bool = False, busy: bool = False) -> dict:
    """Images/s of the package training the pair against the tutorial loop, in alternating rounds, on an idle
    machine or with one busy process (``busy``)."""
    from busy_speed import busy_process
    import contextlib
    batch = 128
    if busy:        # the tutorial's two threads crawl beside a busy process: short rounds suffice
        steps, rounds = (5 if quick else 10), 2
    else:           # rounds of a few seconds: forking the two workers is then a small part of each
        steps, rounds = (10 if quick else 40), (2 if quick else 4)
    data = load_digits()
    variants = {"package_pair": pair_package(data, batch, steps, device),
                "tutorial_pair": pair_tutorial(data, batch, steps, device, default_threads)}
    for fn in variants.values():
        fn(3)
    with busy_process() if busy else contextlib.nullcontext():
        rates = interleaved(variants, rounds, max_seconds=60.0)
    return {"speedup": rates["package_pair"]["best"] / rates["tutorial_pair"]["best"],
            "speedup_median": rates["package_pair"]["median"] / rates["tutorial_pair"]["median"],
            "images_per_s": {k: round(v["best"], 1) for k, v in rates.items()},
            "images_per_s_rounds": {k: v["rounds"] for k, v in rates.items()}}


def trainer_section(device: torch.device, default_threads: int, quick: bool = False) -> dict:
    """Package vs tutorial loop, and the package's FLOP/s over the matmul's, in alternating rounds."""
    batch, steps, rounds = 128, (10 if quick else 25), (2 if quick else 4)
    if device.type == "cuda":
        steps *= 4
    data = load_digits()
    fwd = forward_flops_per_image()
    train_flops = 3 * fwd
    burst = matmul_peak(device, quick)                  # which size is fastest (and its short-burst rate)
    best_n = int(max(burst["per_size"], key=burst["per_size"].get))
    variants = {
        "package": package_loop(data, batch, steps, device),
        "tutorial": tutorial_loop(data, batch, steps, device, default_threads),
        "tutorial_1_thread": tutorial_loop(data, batch, steps, device, 1),
        "minimal": minimal_loop(data, batch, steps, device),
        "matmul": matmul_loop(device, best_n, steps * batch * train_flops),
    }
    for fn in variants.values():          # warm-up: the first calls of a model are much slower
        fn(3)
    rates = interleaved(variants, rounds, max_seconds=45.0)   # a loaded machine: the 2-thread loop crawls
    mm = rates.pop("matmul")
    peak = mm["best"]
    breakdown = step_breakdown(variants["package"])
    conv_share = breakdown["share"].get("convolution", 0.0)
    pkg = rates["package"]["best"]
    achieved = train_flops * pkg
    from conv_limits import conv_limit_section
    kernels = conv_limit_section(peak, device)["conv_limits"] if device.type == "cpu" else None
    idle = pair_speedup(device, default_threads, quick) if device.type == "cpu" else None
    busy = pair_speedup(device, default_threads, quick, busy=True) if device.type == "cpu" else None
    return {
        # the book's workload (a plain/residual pair): side by side against one after the other
        "trainer_speedup_vs_naive": idle["speedup"] if idle else pkg / rates["tutorial"]["best"],
        "trainer_speedup_vs_naive_busy": busy["speedup"] if busy else None,
        "trainer_pair": {"idle": idle, "busy": busy, "workload": "ResNet-20 width 16, plain and residual, "
                         "batch 128; package: skipnet.race.race; tutorial: one after the other"},
        "trainer_single_speedup_vs_naive": pkg / rates["tutorial"]["best"],
        "conv_limits": kernels,
        "step_fraction_of_matmul_peak": achieved / peak,
        "trainer": {
            "model": "ResNet-20, width 16, digits 8x8", "batch": batch, "steps_per_round": steps,
            "rounds": len(rates["package"]["rounds"]),
            "tutorial_threads": default_threads if device.type == "cpu" else None,
            "images_per_s": {k: round(v["best"], 1) for k, v in rates.items()},
            "images_per_s_median": {k: round(v["median"], 1) for k, v in rates.items()},
            "images_per_s_rounds": {k: v["rounds"] for k, v in rates.items()},
            "speedup_vs_tutorial_same_threads": pkg / rates["tutorial_1_thread"]["best"],
            "package_over_minimal_loop": pkg / rates["minimal"]["best"],
            "speedup_vs_tutorial_median": rates["package"]["median"] / rates["tutorial"]["median"],
        },
        "flops": {
            "forward_flops_per_image": fwd, "train_flops_per_image": train_flops,
            "torch_counted_train_flops_per_image": counted_train_flops_per_image(),
            "achieved_gflops": achieved / 1e9, "matmul_peak_gflops": peak / 1e9,
            "matmul_size": best_n, "matmul_gflops_rounds": [round(x / 1e9, 2) for x in mm["rounds"]],
            "matmul_burst_gflops_by_size": burst["per_size"],
            "step_fraction_median": train_flops * rates["package"]["median"] / mm["median"],
            "minimal_loop_fraction": train_flops * rates["minimal"]["best"] / peak,
            # the convolutions alone: the same FLOPs over only the time spent in convolution kernels
            "convolutions_fraction_of_peak": achieved / peak / conv_share if conv_share else None,
        },
        "step_breakdown": breakdown,
    }


# -- several seeds in one pass ---------------------------------------------------------------------
VECTORIZED_CASES = {
    "mlp 10 blocks width 32 layer-norm": (ModelConfig(arch="mlp", n_blocks=10, width=32, norm="layer", in_shape=(64,)), True),
    "mlp 30 blocks width 64 batch-norm": (ModelConfig(arch="mlp", n_blocks=30, width=64, in_shape=(64,)), True),
    "cnn depth 20 width 8 batch-norm": (ModelConfig(arch="cnn", depth=20, width=8), False),
}


def vectorized_section(device: torch.device, quick: bool = False, K: int = 4) -> dict:
    """Images/s of K seeds trained in one vectorized pass over the same K trained one step each in turn."""
    steps, rounds = (5 if quick else 10), (2 if quick else 3)
    cfg = TrainConfig(batch_size=128, steps=10 ** 6)
    out = {}
    for name, (mcfg, flat) in VECTORIZED_CASES.items():
        data = load_digits(flatten=flat)
        models = [build_model(mcfg, seed=s) for s in range(K)]
        vec = VectorizedTrainer([copy.deepcopy(m) for m in models], data, cfg, seeds=range(K), device=device)
        seq = [Trainer(copy.deepcopy(m), data, cfg.with_(seed=s), device=device) for s, m in enumerate(models)]

        def run_vec(steps=steps, vec=vec):
            for _ in range(steps):
                vec.step()
            sync(device)
            return steps * K * cfg.batch_size

        def run_seq(steps=steps, seq=seq):
            for _ in range(steps):
                for t in seq:
                    t.step()
            sync(device)
            return steps * K * cfg.batch_size

        run_vec(2), run_seq(2)
        rates = interleaved({"vectorized": run_vec, "sequential": run_seq}, rounds, max_seconds=30.0)
        out[name] = {"models": K, "images_per_s": {k: round(v["best"], 1) for k, v in rates.items()},
                     "speedup": rates["vectorized"]["best"] / rates["sequential"]["best"],
                     "speedup_median": rates["vectorized"]["median"] / rates["sequential"]["median"]}
    return out
