from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from rednet.cli import main
from rednet.data import Corruption, Levels, PatchDataset, load_training_images
from rednet.export import export_run
from rednet.model import REDNet
from rednet.train import load_checkpoint, train
from rednet.train_config import TrainConfig
from rednet.zoo import load_weights, read_weights


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A small folder of real training images (scikit-image's samples), as a user's folder would be."""
    folder = tmp_path_factory.mktemp("train")
    for name in ["astronaut", "coffee", "chelsea", "rocket"]:
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.png")
    Image.fromarray(data.camera()).save(folder / "camera.png")  # gray files mix in
    return folder


def tiny(folder: Path, **changes) -> TrainConfig:
    """A RED10 of width 16 on 24x24 patches: a few steps take well under a second."""
    base = {
        "data": str(folder),
        "depth": 10,
        "width": 16,
        "steps": 6,
        "batch_size": 4,
        "patch_size": 24,
        "val_set": "",
        "log_every": 1,
        "ckpt_every": 100,
        "dtype": "fp32",
        "sigma": "0-50",
        "lr": 1e-3,
        "schedule": "cosine",
        "warmup": 2,
        "clip_grad": 1.0,
    }
    return TrainConfig(**{**base, **changes})


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "last.pt")["model"]


def test_levels_parse_ranges_and_lists():
    rng = np.random.default_rng(0)
    levels = Levels.parse("0-75")
    draws = [levels.draw(rng) for _ in range(200)]
    assert 0 <= min(draws) < 10 and 65 < max(draws) <= 75
    assert {Levels.parse("2,3,4").draw(rng, integer=True) for _ in range(100)} == {2.0, 3.0, 4.0}
    assert Levels.parse("25").draw(rng) == 25.0
    assert {Levels.parse("5-7").draw(rng, integer=True) for _ in range(100)} == {5.0, 6.0, 7.0}
    with pytest.raises(ValueError, match="levels must look like"):
        Levels.parse("high")


@pytest.mark.parametrize(
    "corruption",
    [
        Corruption("denoise", Levels.parse("0-75")),
        Corruption("sr", Levels.parse("2,3,4")),
        Corruption("jpeg", Levels.parse("5-95")),
        Corruption("deblur", Levels.parse("0-2.55"), kernel="disk"),
        Corruption("inpaint", Levels(values=(0.0,)), damage="text"),
        Corruption("inpaint", Levels.parse("0.3-0.8"), damage="rate"),
    ],
    ids=lambda c: f"{c.task}-{c.kernel or c.damage}",
)
def test_patches_are_a_pure_function_of_seed_and_index(images, corruption):
    ds = PatchDataset(load_training_images([images], "rgb"), [corruption], patch_size=32, seed=3)
    degraded, clean = ds[17]
    assert degraded.shape == clean.shape == (3, 32, 32)
    assert clean.min() >= 0 and clean.max() <= 1
    again = PatchDataset(load_training_images([images], "rgb"), [corruption], patch_size=32, seed=3)[17]
    assert torch.equal(degraded, again[0]) and torch.equal(clean, again[1])
    assert not torch.equal(clean, ds[18][1])
    assert not torch.equal(degraded, clean)


def test_sr_patches_match_the_bicubic_protocol_inside_the_region(images):
    from rednet import degrade

    ds = PatchDataset(
        load_training_images([images], "y"), [Corruption("sr", Levels.parse("3"))], patch_size=30
    )
    degraded, clean = ds[0]
    # The degraded patch is a bicubic up-sampling: down-sampling it again changes little versus the clean one.
    assert float((degraded - clean).abs().mean()) > 0.002
    assert degrade.imresize(clean[None], 1 / 3).shape[-1] == 10


def test_dataloader_workers_do_not_change_the_batches(images):
    ds = PatchDataset(load_training_images([images], "gray"), [Corruption("jpeg", Levels.parse("10-40"))])
    batches = [[0, 1, 2], [3, 4, 5]]
    serial = [b for b, _ in torch.utils.data.DataLoader(ds, batch_sampler=batches, num_workers=0)]
    parallel = [b for b, _ in torch.utils.data.DataLoader(ds, batch_sampler=batches, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))


def test_resume_after_interruption_is_bitwise_identical(images, tmp_path):
    config = tiny(images)
    train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "interrupted", stop_at=3, progress=False)
    assert load_checkpoint(tmp_path / "interrupted" / "last.pt")["step"] == 3
    train(TrainConfig(), tmp_path / "interrupted", resume=True, progress=False)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "interrupted")
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [
        r["step"] for r in map(json.loads, (tmp_path / "interrupted" / "log.jsonl").read_text().splitlines())
    ]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_bf16_training_runs_and_resumes_identically(images, tmp_path):
    config = tiny(images, dtype="bf16", steps=4)
    train(config, tmp_path / "a", progress=False)
    train(config, tmp_path / "b", stop_at=2, progress=False)
    train(TrainConfig(), tmp_path / "b", resume=True, progress=False)
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_trains_in_bf16_only_where_bf16_is_native_and_the_run_keeps_the_choice(
    images, tmp_path, monkeypatch, native
):
    """bf16 autocast is emulated on an AVX2-only CPU (12x slower there): the default must not pick it."""
    monkeypatch.setattr("rednet.train.native_bf16", lambda device: native)
    assert TrainConfig().dtype == "auto"
    run = train(tiny(images, dtype="auto", steps=2), tmp_path / "run", stop_at=1, progress=False)
    expected = "bf16" if native else "fp32"
    assert json.loads((run / "config.json").read_text())["config"]["dtype"] == expected
    assert load_checkpoint(run / "last.pt")["config"]["dtype"] == expected
    monkeypatch.setattr("rednet.train.native_bf16", lambda device: not native)  # another machine resumes
    train(TrainConfig(), run, resume=True, progress=False)
    assert load_checkpoint(run / "last.pt")["config"]["dtype"] == expected


def test_two_process_ddp_equals_one_process_with_the_same_global_batch(images, tmp_path):
    config = tiny(images, steps=3)
    train(config, tmp_path / "single", progress=False)
    args = [
        "--data",
        str(images),
        "--depth",
        "10",
        "--width",
        "16",
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--patch-size",
        "24",
        "--val-set",
        "",
        "--dtype",
        "fp32",
        "--sigma",
        "0-50",
        "--lr",
        "1e-3",
        "--schedule",
        "cosine",
        "--warmup",
        "2",
        "--clip-grad",
        "1.0",
        "--log-every",
        "1",
        "--run-dir",
        str(tmp_path / "ddp"),
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "rednet",
        "train",
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = weights(tmp_path / "single"), weights(tmp_path / "ddp")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    # rank 0 alone logs: one line per step
    assert len((tmp_path / "ddp" / "log.jsonl").read_text().splitlines()) == 3


def test_toml_config_is_read_flags_override_and_unknown_keys_fail(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('task = "jpeg"\nquality = "10-40"\nwidth = 32\nchannels_last = false\n')
    config = TrainConfig.from_toml(toml)
    assert (config.task, config.quality, config.width, config.channels_last) == ("jpeg", "10-40", 32, False)
    (tmp_path / "bad.toml").write_text("widht = 32\n")
    with pytest.raises(ValueError, match="unknown training option.*widht"):
        TrainConfig.from_toml(tmp_path / "bad.toml")
    with pytest.raises(ValueError, match="loss='l3' is not allowed"):
        TrainConfig(loss="l3")


def test_cli_train_export_plot_and_card(images, tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text('depth = 10\nwidth = 16\nsteps = 4\nbatch_size = 4\npatch_size = 24\nval_set = ""\n')
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                str(toml),
                "--data",
                str(images),
                "--steps",
                "3",
                "--run-dir",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    stored = json.loads((run / "config.json").read_text())
    assert stored["config"]["steps"] == 3 and stored["config"]["width"] == 16  # flag beat the file
    assert "rednet train --config" in stored["meta"]["command"]
    out = tmp_path / "model.safetensors"
    assert main(["export", str(run), "-o", str(out)]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["steps"] == 3 and card["patches_seen"] == 12 and card["architecture"]["parameters"] > 0
    assert card["hardware"] and card["command"] and card["levels"] == {"sigma": "0-75"}
    state, config, _ = read_weights(out)
    assert config.width == 16 and all(v.dtype == torch.float32 for v in state.values())
    model, _ = load_weights(out)
    x = torch.rand(1, 1, 20, 20)
    reference = load_checkpoint(run / "last.pt")["model"]
    direct = type(model)(model.config)
    direct.load_state_dict(reference)
    torch.testing.assert_close(model(x), direct(x), atol=2e-3, rtol=0)  # fp16 storage
    assert main(["export", str(run), "-o", str(out)]) == 1  # refuses to overwrite
    assert main(["plot", str(run)]) == 0
    assert Image.open(run / "curves.png").size[0] > 100
    assert main(["train", "--data", str(images), "--run-dir", str(run), "--steps", "3"]) == 1
    assert "--resume" in capsys.readouterr().err


def test_init_with_a_different_architecture_is_a_one_line_error(images, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny(images, steps=1), run, progress=False)
    assert main(["export", str(run), "-o", str(tmp_path / "w16.safetensors")]) == 0
    capsys.readouterr()
    code = main(
        [
            "train",
            "--data",
            str(images),
            "--depth",
            "10",
            "--width",
            "32",
            "--steps",
            "1",
            "--init",
            str(tmp_path / "w16.safetensors"),
            "--run-dir",
            str(tmp_path / "r2"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "do not match the model" in err


def test_init_warm_starts_from_exported_weights(images, tmp_path):
    run = tmp_path / "run"
    train(tiny(images, steps=2), run, progress=False)
    main(["export", str(run), "-o", str(tmp_path / "w.safetensors")])
    start, _ = load_weights(tmp_path / "w.safetensors")
    train(
        tiny(images, steps=1, lr=1e-12, warmup=0, schedule="constant"),
        tmp_path / "warm",
        init=tmp_path / "w.safetensors",
        progress=False,
    )
    after = weights(tmp_path / "warm")
    assert all(torch.allclose(after[k], v, atol=1e-6) for k, v in start.state_dict().items())


def test_warm_started_card_adds_up_the_runs_before_it(images, tmp_path):
    first, second, third = (tmp_path / n for n in ("a", "b", "c"))
    train(tiny(images, steps=3), first, progress=False)
    main(["export", str(first), "-o", str(tmp_path / "a.safetensors")])
    train(tiny(images, steps=2), second, init=tmp_path / "a.safetensors", progress=False)
    main(["export", str(second), "-o", str(tmp_path / "b.safetensors")])
    train(tiny(images, steps=1), third, init=tmp_path / "b.safetensors", progress=False)
    main(["export", str(third), "-o", str(tmp_path / "c.safetensors")])
    card = json.loads((tmp_path / "c.json").read_text())
    assert [r["name"] for r in card["lineage"]] == ["a", "b"]
    assert [r["steps"] for r in card["lineage"]] == [3, 2]
    assert card["steps"] == 1 and card["total"]["steps"] == 6
    assert card["total"]["patches_seen"] == 6 * 4


def test_a_gray_model_warm_starts_an_rgb_run(images, tmp_path):
    train(tiny(images, steps=2, channel="gray"), tmp_path / "gray", progress=False)
    main(["export", str(tmp_path / "gray"), "-o", str(tmp_path / "gray.safetensors")])
    gray, _ = load_weights(tmp_path / "gray.safetensors")
    run = tmp_path / "rgb"
    train(
        tiny(images, steps=1, channel="rgb", lr=1e-12, warmup=0, schedule="constant"),
        run,
        init=tmp_path / "gray.safetensors",
        progress=False,
    )
    after = weights(run)
    torch.testing.assert_close(
        after["convs.3.weight"], gray.state_dict()["convs.3.weight"], atol=1e-6, rtol=0
    )
    # The end layers are the converted ones plus the run's seeded fresh initialisation (symmetry breaking).
    config = tiny(images, channel="rgb")
    torch.manual_seed(config.seed)
    fresh = REDNet(config.model_config()).state_dict()
    converted = gray.state_dict()["convs.0.weight"].repeat(1, 3, 1, 1) / 3
    torch.testing.assert_close(
        after["convs.0.weight"], converted + fresh["convs.0.weight"], atol=1e-6, rtol=0
    )
    assert not torch.allclose(after["convs.0.weight"][:, 0], after["convs.0.weight"][:, 1])


def test_a_small_red_learns_to_denoise_on_the_training_set(data_root, tmp_path):
    """Acceptance: RED10 width 32, 300 steps at sigma 25 lifts Set12 PSNR >= 5 dB above the noisy input."""
    config = TrainConfig(
        task="denoise",
        sigma="25",
        data="train/BSDS500",
        data_root=str(data_root),
        depth=10,
        width=32,
        steps=300,
        batch_size=16,
        lr=1e-3,
        schedule="cosine",
        clip_grad=0.1,
        val_set="Set12",
        val_level="25",
        val_every=300,
        log_every=50,
        seed=0,
    )
    run = train(config, tmp_path / "learn", progress=False)
    val = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "val_psnr" in r]
    from rednet.evaluate import EvalConfig, evaluate

    noisy = evaluate(EvalConfig(task="denoise", sigma=25, dataset="Set12", data_root=str(data_root)))
    assert val[-1]["val_psnr"] >= noisy["mean"]["psnr"] + 5.0


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # train() sets the process-wide thread count


def test_resume_refuses_new_options_but_allows_threads(images, tmp_path, capsys, keep_threads):
    run = tmp_path / "run"
    train(tiny(images, steps=4, threads=2), run, stop_at=2, progress=False)
    assert main(["train", "--resume", str(run), "--steps", "9", "--no-progress"]) == 1
    assert "only --threads and --workers" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--threads", "1", "--no-progress"]) == 0
    assert load_checkpoint(run / "last.pt")["step"] == 4
    assert "from step 2:" in json.loads((run / "config.json").read_text())["meta"]["hardware"]


def test_resume_without_threads_keeps_the_stored_threads(images, tmp_path, keep_threads):
    run = tmp_path / "run"
    train(tiny(images, steps=4, threads=1), run, stop_at=2, progress=False)
    torch.set_num_threads(2)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert torch.get_num_threads() == 1
    assert load_checkpoint(run / "last.pt")["config"]["threads"] == 1


def test_sigterm_stops_the_run_after_writing_a_checkpoint(images, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "rednet",
        "train",
        "--run-dir",
        str(run),
        "--no-progress",
        "--data",
        str(images),
    ]
    command += [
        "--depth",
        "10",
        "--width",
        "8",
        "--steps",
        "100000",
        "--patch-size",
        "16",
        "--batch-size",
        "2",
    ]
    command += ["--val-set", "", "--ckpt-every", "100000", "--dtype", "fp32", "--threads", "1"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "log.jsonl").is_file() or len((run / "log.jsonl").read_text().splitlines()) < 2:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "interrupted" in err
    step = load_checkpoint(run / "last.pt")["step"]
    assert step >= 20  # logged twice (every 10 steps), so the checkpoint is not an empty start


def test_inpainting_patches_mix_the_damages_and_carry_the_mask_for_a_mask_aware_model(images):
    config = tiny(images, task="inpaint", damage="strokes+0.5-0.8", mask_input=True, channel="rgb")
    kinds = [c.damage for c in config.corruptions()]
    assert kinds == ["strokes", "rate"] and all(c.with_mask for c in config.corruptions())
    dataset = PatchDataset(load_training_images([images], "rgb"), config.corruptions(), patch_size=24)
    for i in range(6):
        degraded, clean = dataset[i]
        assert degraded.shape == (4, 24, 24) and clean.shape == (3, 24, 24)
        known = degraded[3:] == 1
        assert torch.equal((degraded[:3] * known), (clean * known))  # the mask marks every change
    with pytest.raises(ValueError, match="mask_input"):
        tiny(images, task="denoise", mask_input=True)


def test_a_blind_gaussian_deblurring_patch_set_draws_a_new_blur_per_patch(images):
    config = tiny(images, task="deblur", kernel="gaussian-family", blur_sigma="0.5-3", sigma="0")
    dataset = PatchDataset(load_training_images([images], "rgb"), config.corruptions(), patch_size=24)

    # Blur strength differs between patches: the detail each patch keeps (gradient energy, blurred / clean).
    def kept_detail(degraded: torch.Tensor, clean: torch.Tensor) -> float:
        return float(degraded.diff(dim=-1).abs().mean() / clean.diff(dim=-1).abs().mean())

    kept = [kept_detail(*dataset[i]) for i in range(12)]
    assert max(kept) > 2 * min(kept)


def test_an_rgb_model_warm_starts_a_mask_aware_inpainting_run(images, tmp_path):
    train(tiny(images, steps=1, channel="rgb"), tmp_path / "rgb", progress=False)
    main(["export", str(tmp_path / "rgb"), "-o", str(tmp_path / "rgb.safetensors")])
    config = tiny(images, task="inpaint", damage="strokes+0-0.8", mask_input=True, channel="rgb", steps=2)
    train(config, tmp_path / "mask", init=tmp_path / "rgb.safetensors", progress=False)
    main(["export", str(tmp_path / "mask"), "-o", str(tmp_path / "mask.safetensors")])
    model, card = load_weights(tmp_path / "mask.safetensors")
    assert model.config.mask_input and model.config.channels == 3
    first = model.state_dict()["convs.0.weight"]
    assert first.shape[1] == 4 and first[:, 3].abs().sum() > 0  # the mask channel has learnt something
    assert card["levels"]["damage"] == "strokes+0-0.8"


def test_a_damage_model_learns_the_mask_and_is_validated_by_filling_what_it_finds(images, tmp_path):
    from rednet.inpaint import DAMAGE_WEIGHT, damage_loss

    # A missed damaged pixel costs DAMAGE_WEIGHT times a false alarm of the same confidence.
    missed = damage_loss(torch.tensor([[[[0.1]]]]), torch.tensor([[[[1.0]]]]))
    false_alarm = damage_loss(torch.tensor([[[[0.9]]]]), torch.tensor([[[[0.0]]]]))
    assert float(missed) == pytest.approx(DAMAGE_WEIGHT * float(false_alarm))
    with pytest.raises(ValueError, match="output"):
        tiny(images, task="denoise", output="damage")
    config = tiny(images, task="inpaint", damage="strokes", output="damage", channel="rgb", steps=2)
    assert all(c.with_mask for c in config.corruptions())  # the mask is the target
    config = dataclasses.replace(config, val_set=str(images), val_limit=1, val_every=2, val_level="text")
    train(config, tmp_path / "run", progress=False)
    main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "detect.safetensors")])
    model, card = load_weights(tmp_path / "detect.safetensors")
    assert model.config.output == "damage" and card["architecture"]["output"] == "damage"
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_psnr" in r] == [2] and records[-1]["val_psnr"] > 5


def test_decoy_patches_keep_the_images_own_text_in_the_target_and_mark_only_the_overlay(images):
    config = tiny(images, task="inpaint", damage="text+decoys+framed", output="damage", channel="rgb")
    assert [c.damage for c in config.corruptions()] == ["text", "decoys", "framed"]
    decoys = config.corruptions()[1]
    region = load_training_images([images], "rgb")[0][None, :, :64, :64].float() / 255
    clean, degraded = decoys.apply(region, np.random.default_rng(0))
    assert not torch.equal(clean, region)  # text of its own, which is not damage
    kept = degraded[:, 3:] == 1
    assert torch.equal(degraded[:, :3] * kept, clean * kept)


def _log_without_timing(run_dir: Path) -> list[dict]:
    """log.jsonl's records without the fields that measure time (rates, elapsed)."""
    records = map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())
    return [{k: v for k, v in r.items() if k not in ("patches_per_s", "elapsed")} for r in records]


def test_resume_after_a_kill_past_the_last_checkpoint_truncates_the_log_to_it(images, tmp_path):
    config = tiny(images, ckpt_every=3)
    train(config, tmp_path / "straight", progress=False)
    run = tmp_path / "killed"
    train(config, run, stop_at=3, progress=False)
    at_three = (run / "last.pt").read_bytes()
    train(TrainConfig(), run, resume=True, stop_at=5, progress=False)
    # kill -9 at step 5: steps 4 and 5 are logged, last.pt is still the one of step 3; a line is cut short
    (run / "last.pt").write_bytes(at_three)
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 6, "lo')
    train(TrainConfig(), run, resume=True, progress=False)
    assert [r["step"] for r in _log_without_timing(run)] == [1, 2, 3, 4, 5, 6]
    assert _log_without_timing(run) == _log_without_timing(tmp_path / "straight")
    a, b = weights(tmp_path / "straight"), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_fresh_run_in_a_folder_killed_before_its_first_checkpoint_starts_an_empty_log(images, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n')
    train(tiny(images, steps=2), run, progress=False)
    assert [r["step"] for r in _log_without_timing(run)] == [1, 2]


def test_plot_refuses_a_log_whose_steps_repeat_in_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    steps = [1, 2, 3, 2, 3]
    (run / "log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in steps))
    assert main(["plot", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "loss steps do not increase (step 2 after step 3)" in err
    assert not (run / "curves.png").exists()


def test_a_checkpoint_saved_before_the_damage_spec_was_renamed_still_reads():
    """Runs saved before the damage spec was renamed from ``mask`` to ``damage`` still export and resume."""
    config = TrainConfig.from_dict({"task": "inpaint", "mask": "strokes+0-0.8", "channel": "rgb"})
    assert config.damage == "strokes+0-0.8" and [c.damage for c in config.corruptions()] == [
        "strokes",
        "rate",
    ]


def test_a_chain_of_tasks_applies_them_in_turn_to_one_patch_noise_then_jpeg(images, tmp_path):
    from rednet.metrics import psnr

    config = tiny(images, task="sr,denoise>jpeg", sigma="25", quality="10", channel="gray")
    sr, chain = config.corruptions()
    assert sr.then is None and (chain.task, chain.then.task, chain.margin()) == ("denoise", "jpeg", 16)
    region = torch.from_numpy(data.camera()[100:164, 100:164]).float()[None, None] / 255
    clean, degraded = chain.apply(region, np.random.default_rng(0))
    assert torch.equal(clean, region)
    assert torch.equal(degraded, torch.round(degraded * 255) / 255)  # the JPEG came last: 8-bit levels
    jpeg_only = Corruption("jpeg", Levels.parse("10")).apply(region, np.random.default_rng(0))[1]
    assert psnr(degraded, clean) < psnr(jpeg_only, clean) - 1  # and the noise is in it too
    with pytest.raises(ValueError, match="denoise can be followed by denoise, jpeg or deblur, not sr"):
        tiny(images, task="denoise>sr")
    run = train(dataclasses.replace(config, steps=2), tmp_path / "run", progress=False)  # the engine takes it
    assert load_checkpoint(run / "last.pt")["step"] == 2


def test_a_mixed_run_gives_deblur_its_own_noise_and_its_card_records_every_tasks_levels(images, tmp_path):
    """The all-corruption model: light noise on its blurs (``deblur_sigma``) while its denoising patches draw
    from ``sigma``; its card lists the levels of every task it trained on, not only the first's."""
    config = tiny(
        images,
        task="denoise,deblur>jpeg,deblur>denoise",
        sigma="50",
        deblur_sigma="2.55",
        kernel="gaussian-family",
        quality="10",
        channel="rgb",
    )
    noise, blur_jpeg, blur_noise = config.corruptions()
    assert noise.levels.values == (50.0,) and blur_jpeg.levels.values == (2.55,)
    assert (blur_noise.task, blur_noise.levels.values, blur_noise.then.levels.values) == (
        "deblur",
        (2.55,),
        (50.0,),
    )
    assert dataclasses.replace(config, deblur_sigma="").corruptions()[1].levels.values == (50.0,)
    run = train(dataclasses.replace(config, steps=2), tmp_path / "run", progress=False)
    card = json.loads(export_run(run, tmp_path / "every.safetensors").with_suffix(".json").read_text())
    assert card["levels"] == {
        "sigma": "50",
        "kernel": "gaussian-family",
        "deblur_sigma": "2.55",
        "blur_sigma": "0.5-3",
        "quality": "10",
    }
