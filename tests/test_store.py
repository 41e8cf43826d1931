"""The stored sweeps: resumable seed by seed, never mixed, written atomically, rerun by their stored command, read
the same way whether exploratory or confirmatory (skipnet.store, scripts/precompute_*.py, scripts/sweeps.py)."""
import importlib.util
import json
import os
import shlex
from pathlib import Path

import pytest

from skipnet import store
from skipnet import sweep as sweep_module
from skipnet.store import (format_seeds, interleave, load_result, load_sweep, parse_seeds, save_result,
                           seeds_argument, tagged, write_json)
from skipnet.sweep import Sweep, SweepMismatch, start_sweep

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "book" / "data"
TIMING = ("seconds", "cpu_seconds", "created")


def _script(name):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _untimed(obj):
    """``obj`` without wall-clock fields (two runs of the same sweep differ only in those)."""
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


class Interrupt(Exception):
    """Stands for the kill of a run (Ctrl-C, a closed terminal, the end of a sitting)."""


def fake_run(cell, seed):
    """A per-seed computation whose result depends on its arguments only (tuples and floats, as real rows)."""
    return {"cell": cell, "seed": seed, "value": seed * 10.0 + cell[1] / 3, "pair": (seed, cell[0])}


CELLS = [("plain", 1), ("residual", 2), ("plain", 3)]
SEEDS = [7, 3, 12]


def _sweep_file(path, calls, stop_after=None, config=None, seeds=SEEDS):
    """One sitting of a small sweep into ``path``; raises Interrupt after ``stop_after`` computations."""
    def compute(cell, seed):
        if stop_after is not None and len(calls) >= stop_after:
            raise Interrupt
        calls.append((cell, seed))
        return fake_run(cell, seed)
    sweep = start_sweep([path], "python make.py --seeds 7 3 12", config or {"lr": 0.1, "cells": CELLS}, seeds,
                        log=None)
    with sweep:
        rows = sweep.grid(CELLS, compute)
        sweep.finish({path: {"runs": rows}})
    return sweep


def test_an_interrupted_sweep_resumes_where_it_stopped_and_writes_the_same_file(tmp_path):
    whole, calls = tmp_path / "whole.json", []
    _sweep_file(whole, calls)
    assert len(calls) == len(CELLS) * len(SEEDS)
    assert [c[1] for c in calls] == [s for s in SEEDS for _ in CELLS]            # run seed by seed
    reference = [json.loads(json.dumps(fake_run(c, s))) for c in CELLS for s in SEEDS]   # the loop's own order
    assert load_result(whole)["data"]["runs"] == reference

    cut, first = tmp_path / "cut.json", []
    with pytest.raises(Interrupt):
        _sweep_file(cut, first, stop_after=4)                  # killed after seed 7 and one piece of seed 3
    assert not cut.exists() and (tmp_path / "cut.parts").is_dir()
    state = Sweep(tmp_path / "cut.parts", "python make.py --seeds 7 3 12", {"lr": 0.1, "cells": CELLS}, SEEDS)
    assert state.seeds_done == [7]                             # a finished seed is known as done
    second = []
    _sweep_file(cut, second)                                   # the same command again
    assert second == [(c, s) for s in SEEDS for c in CELLS][4:]    # nothing stored is computed twice
    a, b = load_result(whole), load_result(cut)
    assert _untimed(a) == _untimed(b)
    assert b["seeds"] == SEEDS and b["command"] == "python make.py --seeds 7 3 12"
    assert not (tmp_path / "cut.parts").exists()               # the pieces go once the file is written
    # a finished sweep has nothing left to run, unless asked to start over
    assert start_sweep([cut], "python make.py --seeds 7 3 12", {"lr": 0.1, "cells": CELLS}, SEEDS, log=None) is None
    assert start_sweep([cut], "python make.py --seeds 7 3 12", {"lr": 0.1, "cells": CELLS}, SEEDS, log=None,
                       restart=True) is not None


def test_a_real_precompute_script_resumes_seed_by_seed(tmp_path, monkeypatch):
    """scripts/precompute_highway.py convergence at a tiny setting (depth 8, one epoch, two seeds): killed after
    three runs, restarted with the same command, it ends with the file of an uninterrupted run."""
    highway = _script("precompute_highway")
    from skipnet.experiments import degradation as dg
    real, calls = dg.convergence_run, []

    def counted(depth, residual, seed, epochs):
        if stop[0] is not None and len(calls) >= stop[0]:
            raise Interrupt
        calls.append((depth, residual, seed))
        return real(depth, residual, seed, epochs=epochs)
    monkeypatch.setattr(dg, "convergence_run", counted)
    argv = ["convergence", "--grid", "8:0,1", "--epochs", "1"]
    stop = [None]
    assert highway.main(argv + ["--out", str(tmp_path / "whole.json")]) == 0
    stop, calls[:] = [3], []
    with pytest.raises(Interrupt):
        highway.main(argv + ["--out", str(tmp_path / "cut.json")])
    stop, calls[:] = [None], []
    assert highway.main(argv + ["--out", str(tmp_path / "cut.json")]) == 0
    assert calls == [(8, True, 1)]                              # only the run that the kill cut short
    a, b = load_result(tmp_path / "whole.json"), load_result(tmp_path / "cut.json")
    assert len(a["data"]) == 4 and [(r["seed"], r["residual"]) for r in a["data"]] == [
        (0, False), (0, True), (1, False), (1, True)]
    assert _untimed(a["data"]) == _untimed(b["data"]) and a["config"] == b["config"] and b["seeds"] == [0, 1]


def test_mixing_seeds_made_with_another_config_or_code_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "x.json"
    with pytest.raises(Interrupt):
        _sweep_file(out, [], stop_after=2)
    with pytest.raises(SweepMismatch, match=r"different config(.|\n)*\['lr'\]: 0.1 stored, 0.2 in this run"):
        _sweep_file(out, [], config={"lr": 0.2, "cells": CELLS})
    with pytest.raises(SweepMismatch, match=r"different seeds"):
        _sweep_file(out, [], seeds=[7, 3, 13])
    made = store.made_with()
    monkeypatch.setattr(sweep_module, "made_with", lambda script=None: dict(made, code="0" * 16, commit="abc"))
    with pytest.raises(SweepMismatch, match=r"different code version(.|\n)*\['commit'\]"):
        _sweep_file(out, [])
    monkeypatch.undo()
    calls = []
    _sweep_file(out, calls)                                     # the same settings finish it
    assert len(calls) == len(CELLS) * len(SEEDS) - 2


def test_a_script_names_the_difference_and_stops(tmp_path, monkeypatch, capsys):
    highway = _script("precompute_highway")
    from skipnet.experiments import degradation as dg

    def killed(*args, **kw):
        raise Interrupt
    monkeypatch.setattr(dg, "convergence_run", killed)
    with pytest.raises(Interrupt):
        highway.main(["convergence", "--grid", "8:0", "--epochs", "1", "--out", str(tmp_path / "c.json")])
    assert highway.main(["convergence", "--grid", "8:0", "--epochs", "2", "--out", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert "['epochs']: 1 stored, 2 in this run" in err and "--restart" in err


def test_a_stored_confirmation_is_not_replaced_by_another_run(tmp_path):
    out = tagged(tmp_path / "x.json", "confirm")
    _sweep_file(out, [])
    with pytest.raises(SweepMismatch, match="not replaced silently"):
        start_sweep([out], "python make.py --seeds 7 3 12", {"lr": 0.2, "cells": CELLS}, SEEDS, tag="confirm",
                    log=None)
    assert start_sweep([out], "python make.py --seeds 7 3 12", {"lr": 0.2, "cells": CELLS}, SEEDS, tag="confirm",
                       restart=True, log=None) is not None


def test_a_crash_while_writing_leaves_the_last_good_file(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    write_json(path, {"seeds": [0, 1]})

    def crash(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", crash)                     # dies after writing, before the rename
    with pytest.raises(OSError, match="disk full"):
        write_json(path, {"seeds": [0, 1, 2]})
    assert json.loads(path.read_text()) == {"seeds": [0, 1]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]   # no temporary file left behind


def test_a_crash_while_storing_a_seed_keeps_the_seeds_before_it(tmp_path, monkeypatch):
    out = tmp_path / "x.json"
    real = os.replace

    def replace(src, dst):
        if Path(dst).name == "seed-3.json":
            raise Interrupt                                     # killed while storing seed 3's first piece
        return real(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Interrupt):
        _sweep_file(out, [])
    monkeypatch.undo()
    calls = []
    _sweep_file(out, calls)
    assert calls == [(c, s) for s in SEEDS[1:] for c in CELLS]


@pytest.mark.parametrize("name, argv", [
    ("precompute_identity", ["--section", "fit_fair", "--seeds", "10-19", "25", "--tag", "confirm", "--restart"]),
    ("precompute_identity", ["--section", "decode", "--seeds", "7-7", "--out", "/tmp/some where"]),
    ("precompute_transformers", ["recall", "--seeds", "100", "102", "--tag", "c2"]),
    ("precompute_ensemble", ["--seeds", "100-102", "--parts", "trials", "gaps", "--tag", "confirm"]),
    ("precompute_highway", ["convergence", "--grid", "8,14:100-102", "--grid", "110:100", "--tag", "confirm"]),
    ("precompute_highway", ["lr", "--lrs", "0.1", "--seeds", "4", "9", "--restart"]),
])
def test_the_stored_command_reproduces_the_arguments(name, argv):
    script = _script(name)

    def parsed(words):
        if name == "precompute_highway":
            sweep, rest, args = script.parse_args(words)
            args.out = ROOT / args.out                          # the stored command runs from the repository
            return sweep, rest, args, script.command_for(sweep, rest, args, args.out)
        args = script.parse_args(words)
        if name == "precompute_ensemble":
            return args, script.command_for(args)
        which = args.section if name == "precompute_identity" else args.sweeps[0]
        return args, script.command_for(args, which)

    first = parsed(argv)
    command = first[-1]
    words = shlex.split(command)
    assert words[1] == f"scripts/{name}.py"
    again = parsed(words[2:])
    a, b = vars(first[-2]), vars(again[-2])
    a.pop("restart"), b.pop("restart")
    if "parts" in a:                                            # a set of parts: their order does not matter
        a["parts"], b["parts"] = set(a["parts"]), set(b["parts"])
    assert a == b and again[-1] == command
    assert "--restart" not in command                           # a rerun resumes; it never discards


def test_the_exploratory_commands_are_unchanged():
    """Rebuilt from the stored files' own commands, every command is the stored one (the default outputs keep
    their commands)."""
    scripts = {n: _script(n) for n in ("precompute_identity", "precompute_transformers", "precompute_ensemble",
                                       "precompute_highway")}
    checked = 0
    for path in sorted(DATA.glob("*.json")):
        if "." in path.stem:
            continue
        command = load_result(path)["command"]
        words = shlex.split(command)
        name = Path(words[1]).stem
        if name not in scripts:
            continue
        if name == "precompute_highway":
            sweep, rest, args = scripts[name].parse_args(words[2:])
            rebuilt = scripts[name].command_for(sweep, rest, args, ROOT / args.out)
            assert ROOT / args.out == path
            assert rebuilt == command
            checked += 1
            continue
        args = scripts[name].parse_args(words[2:])
        if name == "precompute_ensemble":
            rebuilt = scripts[name].command_for(args)
        else:
            rebuilt = scripts[name].command_for(args, path.stem.split("_", 1)[1])
        assert rebuilt == command
        checked += 1
    assert checked == len([p for p in DATA.glob("*.json") if "." not in p.stem])


def test_load_result_and_load_sweep_read_old_and_new_files(tmp_path):
    old = load_result(DATA / "identity_fit.json")               # written before sweeps were resumable
    assert {"command", "config", "made_with", "created", "seconds", "data"} <= set(old) and "seeds" not in old
    assert load_sweep("identity_fit") == old
    (tmp_path / "identity_fit.json").write_text((DATA / "identity_fit.json").read_text())
    fresh = {"runs": [dict(r, seed=r["seed"] + 100) for r in old["data"]["runs"]]}
    save_result(tagged(tmp_path / "identity_fit.json", "confirm"), fresh, old["config"], "cmd", 1.0,
                seeds=[100, 101])
    new = load_sweep("identity_fit", "confirm", data_dir=tmp_path)
    assert set(old) <= set(new) and new["seeds"] == [100, 101] and new["data"] == fresh
    assert {"commit", "code", "cpu_capability", "torch"} <= set(new["made_with"])
    assert load_sweep("identity_fit", data_dir=tmp_path) == old
    with pytest.raises(FileNotFoundError, match="'identity_fit' with tag 'other'"):
        load_sweep("identity_fit", "other", data_dir=tmp_path)


def test_bad_seeds_and_tags_get_a_clear_message():
    assert parse_seeds(["10-12", "3"]) == [10, 11, 12, 3]
    assert parse_seeds(format_seeds([4, 5, 6, 9, 20, 21]).split()) == [4, 5, 6, 9, 20, 21]
    assert format_seeds([7]) == "7-7"
    assert seeds_argument([0, 1, 2, 3, 4]) == "5" and seeds_argument([0]) == "1"      # a count, as stored commands say
    assert seeds_argument([1, 2, 3]) == "1-3" and seeds_argument([10, 12]) == "10 12"
    with pytest.raises(ValueError, match="seeds must not repeat"):
        parse_seeds(["1-3", "2"])
    with pytest.raises(ValueError, match="seeds: the range '5-2' is empty"):
        parse_seeds(["5-2"])
    with pytest.raises(ValueError, match="seeds must be integers"):
        parse_seeds(["x"])
    with pytest.raises(ValueError, match="tag must be a word"):
        tagged("a.json", "../x")
    with pytest.raises(ValueError, match="seed must be one of this sweep's seeds"):
        Sweep(Path("/nonexistent/x.parts"), "c", {}, [1, 2]).run(3, (), lambda: 0)


def test_interleave_puts_the_seed_loop_inside():
    assert interleave([[("a", 0), ("b", 0)], [("a", 1), ("b", 1)]]) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert interleave([[1, 2, 3, 4], [5, 6, 7, 8]], block=2) == [1, 2, 5, 6, 3, 4, 7, 8]
    with pytest.raises(ValueError, match="same number of rows"):
        interleave([[1], [2, 3]])


def test_confirmation_commands_use_fresh_seeds_and_write_beside_the_stored_files():
    sweeps = _script("sweeps")
    fresh = list(range(100, 110))
    commands = sweeps.confirm_commands(list(sweeps.DECIDING), fresh, "confirm")
    assert len(commands) == len(set(commands))
    covered = set()
    for command in commands:
        words = shlex.split(command)
        name = Path(words[1]).stem
        script = _script(name)
        if name == "precompute_highway":
            sweep, _, args = script.parse_args(words[2:])
            covered.add(f"highway_{sweep}")
        else:
            args = script.parse_args(words[2:])
            if name == "precompute_identity":
                covered.add(f"identity_{args.section}")
            elif name == "precompute_transformers":
                covered |= {f"transformers_{s}" for s in args.sweeps}
            else:
                covered |= {f"ensemble_{n}" for n, part in sweeps.ENSEMBLE_PART.items() if part in args.parts}
        assert args.seeds == fresh and args.tag == "confirm"
    assert set(sweeps.DECIDING) <= covered
    with pytest.raises(ValueError, match=r"seeds must be fresh(.|\n)*identity_decode: \[4\]"):
        sweeps.confirm_commands(["identity_decode"], [4, 100], "confirm")
    with pytest.raises(ValueError, match=r"ensemble_noise: \[24\]"):      # a member net of stored seed 4
        sweeps.confirm_commands(["ensemble_noise"], [24, 100], "confirm")


def test_a_piece_reads_back_as_it_was_computed(tmp_path):
    """A resumed run sees exactly what an uninterrupted one saw: values go through JSON both ways, and changing a
    returned value does not change the stored one."""
    with Sweep(tmp_path / "x.parts", "c", {}, [0], log=None) as sweep:
        first = sweep.run(0, ("a", 1), lambda: {"pair": (1, 2), 3: 0.1})
        assert first == {"pair": [1, 2], "3": 0.1}
        first["pair"].append(9)
        assert sweep.run(0, ("a", 1), lambda: pytest.fail("computed twice")) == {"pair": [1, 2], "3": 0.1}
    reread = Sweep(tmp_path / "x.parts", "c", {}, [0], log=None)
    assert reread.run(0, ["a", 1], lambda: pytest.fail("computed twice")) == {"pair": [1, 2], "3": 0.1}


def test_a_killed_run_leaves_a_stale_lock_that_the_next_run_takes_over(tmp_path):
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    state = tmp_path / "x.parts"
    state.mkdir()
    (state / "lock").write_text(dead.stdout)                    # a run killed before it could remove its lock
    with Sweep(state, "c", {}, [0], log=None) as sweep:
        sweep.run(0, (), lambda: 1)
    (state / "lock").write_text(f"{os.getppid()}\n")            # a live process holds it
    with pytest.raises(RuntimeError, match=f"another process \\(pid {os.getppid()}\\) is running this sweep"):
        Sweep(state, "c", {}, [0], log=None).__enter__()


def test_the_listing_shows_seeds_commands_confirmations_and_unfinished_runs(tmp_path):
    sweeps = _script("sweeps")
    (tmp_path / "identity_decode.json").write_text((DATA / "identity_decode.json").read_text())
    (tmp_path / "identity_fit.json").write_text((DATA / "identity_fit.json").read_text())
    (tmp_path / "identity_lambda.json").write_text((DATA / "identity_lambda.json").read_text())
    save_result(tmp_path / "identity_decode.confirm.json", {"runs": []}, {}, "python x --tag confirm",
                seeds=range(100, 110))
    with Sweep(tmp_path / "identity_fit.confirm.parts", "c", {}, [100, 101, 102], log=None) as sweep:
        sweep.run(100, (), lambda: 1)
        sweep.seed_done(100)
        sweep.run(101, (), lambda: 1)
    text = sweeps.listing(tmp_path)
    assert "* identity_decode: seeds 0-4\n    python scripts/precompute_identity.py --section decode --seeds 5" in text
    assert "confirm: seeds 100-109, commit " in text and "python x --tag confirm" in text
    assert "* identity_fit: seeds 0-4" in text                  # read by the identity chapter's family
    assert "  identity_lambda: seeds 0-2" in text               # not deciding, no confirmation
    assert "unfinished: identity_fit.confirm.parts: 1 of 3 seeds done (100-100)" in text
