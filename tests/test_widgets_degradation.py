"""The opening chapter's lab, driven as a reader would: set controls, click, read the result."""

from skipnet.widgets.degradation import DegradationRace


def test_default_run_trains_both_networks_and_draws():
    lab = DegradationRace()
    lab.epochs.value = 2
    lab.run_button.click()
    result = lab.wait(timeout=300)
    assert lab.error is None, lab.error
    assert set(result) == {"plain", "residual"}
    assert all(h.status == "finished" for h in result.values())
    assert lab.image.value[:4] == b"\x89PNG" and lab.progress.value == 1.0
    assert "residual" in lab.message.value and "final training loss" in lab.message.value
    assert lab.first_update_s is not None            # it reported progress (how soon: bench/widget_speed.py)
    assert not lab.run_button.disabled and lab.stop_button.disabled


def test_single_network_and_bad_seed():
    lab = DegradationRace(threaded=False)
    lab.which.value, lab.epochs.value, lab.depth.value = "residual", 1, 8
    lab.run_button.click()
    assert set(lab.result) == {"residual"}
    for bad, name in ((-3, "seed"), (10**20, "seed"), (2**32, "seed")):
        lab.seed.value = bad
        lab.run_button.click()
        assert lab.result is None and f"{name} must be an integer between 0 and 4,294,967,295" in lab.error
        assert name in lab.message.value and "Traceback" not in lab.message.value
