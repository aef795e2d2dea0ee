"""rednet kill-trials: small versions of the kill -9 trials of rednet train and a folder rednet restore."""

from __future__ import annotations

import json

from rednet.cli import main
from rednet.kill_trials import restore_trials, train_trials


def test_two_kills_of_training_each_resume_to_the_weights_and_log_of_the_straight_run():
    result = train_trials(2, seed=1, steps=24, ckpt_every=5)
    assert result["trials"] == 2 and len(result["records"]) == 2
    assert result["survived"] == 2, result["records"]


def test_two_kills_of_a_folder_restore_leave_complete_outputs_and_skip_existing_finishes_the_set():
    result = restore_trials(2, seed=1, images=4, side=96)
    assert result["survived"] == 2, result["records"]
    assert all(r["complete_at_kill"] and r["finished"] and r["temps_after"] == 0 for r in result["records"])


def test_kill_trials_is_a_command_that_prints_json(capsys):
    assert main(["kill-trials", "restore", "--trials", "1", "--seed", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["command"], result["trials"], result["seed"], result["survived"]) == ("restore", 1, 2, 1)
    assert main(["kill-trials", "train", "--trials", "0"]) == 1
    assert "--trials must be a positive" in capsys.readouterr().err
