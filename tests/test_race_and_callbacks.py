"""The trainer's event hook and the race's question to the model: does it draw at random?"""
import torch.nn as nn

from skipnet.data import load_digits
from skipnet.models import ModelConfig
from skipnet.race import draws_at_random
from skipnet.train import TrainConfig, Trainer

MLP = ModelConfig(arch="mlp", n_blocks=3, width=16, in_shape=(64,))


def test_a_callback_runs_once_after_every_completed_step_and_can_stop_the_run():
    trainer = Trainer(MLP.build(0), load_digits(flatten=True), TrainConfig(steps=6, batch_size=32))
    seen = []
    trainer.add_callback("on_step_end", lambda t: seen.append(t.history.steps_done))
    trainer.add_callback("on_step_end", lambda t: t.stop() if t.history.steps_done == 4 else None)
    history = trainer.run()
    assert seen == [1, 2, 3, 4]
    assert history.status == "stopped at step 4"


def test_an_unknown_event_is_named():
    trainer = Trainer(MLP.build(0), load_digits(flatten=True), TrainConfig(steps=2, batch_size=32))
    try:
        trainer.add_callback("on_batch_begin", print)
    except ValueError as e:
        assert "on_step_end" in str(e)
    else:
        raise AssertionError("an unknown event was accepted")


def test_models_say_themselves_whether_they_draw_at_random():
    assert not draws_at_random(MLP.build(0))
    assert draws_at_random(MLP.with_(drop_prob=0.5).build(0))                 # stochastic depth
    assert draws_at_random(MLP.with_(shortcut="dropout").build(0))           # a dropout shortcut
    assert draws_at_random(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1)))
    assert not draws_at_random(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0)))
