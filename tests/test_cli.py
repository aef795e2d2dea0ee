from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from conftest import png16_with_a_bad_idat_crc, tiff16_truncated
from rednet.cli import build_parser, main

TASK_FLAGS = {
    "denoise": ["--sigma", "25"],
    "sr": ["--scale", "3"],
    "jpeg": ["--quality", "10"],
    "deblur": ["--kernel", "disk", "--sigma", "2.55"],
    "inpaint": ["--damage", "text"],
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(data.astronaut()[:96, :120]).save(path)
    return path


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Each bad input and the start of its documented one-line error."""
    folder = tmp_path_factory.mktemp("bad")
    good = folder / "good.png"
    Image.fromarray(data.camera()).save(good)
    raw = good.read_bytes()
    (folder / "truncated.png").write_bytes(raw[: len(raw) // 2])
    (folder / "notes.png").write_text("this is not an image\n")
    (folder / "empty.png").write_bytes(b"")
    (folder / "folder.png").mkdir()
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")  # 400 Mpx, a few KB on disk
    return {
        "truncated": (folder / "truncated.png", "truncated or corrupt image file"),
        "text": (folder / "notes.png", "not an image"),
        "empty": (folder / "empty.png", "empty file"),
        "directory": (folder / "folder.png", "is a directory"),
        "bomb": (folder / "bomb.png", "400000000 pixels exceeds the limit of 100000000"),
        "missing": (folder / "missing.png", "file not found"),
    }


def test_help_lists_every_command_with_a_one_line_description(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ["degrade", "restore", "eval", "train", "export", "plot", "bench", "models", "demo"]:
        assert re.search(rf"^\s+{command}\s+\S", out, flags=re.MULTILINE), command


@pytest.mark.parametrize("kind", ["truncated", "text", "empty", "directory", "bomb", "missing"])
@pytest.mark.parametrize("task", list(TASK_FLAGS))
def test_bad_input_gives_one_line_error_exit_1_and_is_not_modified(bad_inputs, tmp_path, capsys, kind, task):
    path, message = bad_inputs[kind]
    before = digest(path) if path.exists() else None
    code = main(["degrade", "--task", task, *TASK_FLAGS[task], str(path), "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("rednet: error: ")
    assert path.name in err and message in err
    assert (digest(path) if path.exists() else None) == before
    assert not (tmp_path / "out.png").exists()
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file left behind


@pytest.mark.parametrize("make", [png16_with_a_bad_idat_crc, tiff16_truncated], ids=["png", "tiff"])
def test_native_decoder_messages_do_not_come_before_the_one_line_error(tmp_path, capfd, make):
    """libpng (in OpenCV) and libtiff (in Pillow) print on file descriptor 2, which capsys does not see."""
    path = make(tmp_path)
    assert (
        main(["degrade", "--task", "denoise", "--sigma", "5", str(path), "-o", str(tmp_path / "o.png")]) == 1
    )
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"rednet: error: {path}: truncated or corrupt image file")


@pytest.mark.parametrize("task", ["denoise", "jpeg", "deblur", "inpaint"])
def test_a_1x1_image_gives_a_1x1_result(tmp_path, task):
    src = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 100, 50)).save(src)
    out = tmp_path / "out.png"
    assert main(["degrade", "--task", task, *TASK_FLAGS[task], str(src), "-o", str(out)]) == 0
    assert Image.open(out).size == (1, 1)


def test_a_1x1_image_is_too_small_to_downscale_and_says_so(tmp_path, capsys):
    src = tmp_path / "dot.png"
    Image.new("RGB", (1, 1)).save(src)
    assert main(["degrade", "--task", "sr", "--scale", "3", str(src), "-o", str(tmp_path / "o.png")]) == 1
    assert "smaller than 3x3" in capsys.readouterr().err


def test_16_bit_rgba_stays_16_bit_rgba_and_sr_writes_the_low_resolution_image(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    bgra = (rng.random((40, 50, 4)) * 65535).astype(np.uint16)
    src = tmp_path / "deep.png"
    cv2.imwrite(str(src), bgra)
    before = digest(src)
    for task, shape in [("denoise", (40, 50, 4)), ("sr", (13, 16, 4))]:
        out = tmp_path / f"{task}.png"
        assert main(["degrade", "--task", task, *TASK_FLAGS[task], str(src), "-o", str(out)]) == 0
        result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert result.dtype == np.uint16 and result.shape == shape
    # the alpha channel is carried over untouched by the noise
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "denoise.png"), -1)[..., 3], bgra[..., 3])
    assert digest(src) == before


def test_cmyk_jpeg_is_read_as_rgb(tmp_path):
    src = tmp_path / "print.jpg"
    Image.fromarray(data.astronaut()[:64, :64]).convert("CMYK").save(src, quality=95)
    out = tmp_path / "out.png"
    assert main(["degrade", "--task", "jpeg", "--quality", "50", str(src), "-o", str(out)]) == 0
    result = np.asarray(Image.open(out))
    assert Image.open(out).mode == "RGB"
    assert np.abs(result.astype(float) - data.astronaut()[:64, :64]).mean() < 12


def test_degrade_never_overwrites_its_input_or_an_existing_file(photo, tmp_path, capsys):
    before = digest(photo)
    assert main(["degrade", "--task", "denoise", "--sigma", "25", str(photo), "-o", str(photo)]) == 1
    assert "is an input file" in capsys.readouterr().err
    assert digest(photo) == before
    out = tmp_path / "noisy.png"
    assert main(["degrade", "--task", "denoise", "--sigma", "25", str(photo), "-o", str(out)]) == 0
    assert main(["degrade", "--task", "denoise", "--sigma", "25", str(photo), "-o", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (
        main(["degrade", "--task", "denoise", "--sigma", "25", str(photo), "-o", str(out), "--overwrite"])
        == 0
    )


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a model is loaded: the refusals below must come before any model loads."""
    from rednet import zoo

    def load(*args, **kwargs):
        raise AssertionError("a model was loaded before the outputs were checked")

    monkeypatch.setattr(zoo, "load", load)


def small_images(folder: Path, names: list[str], side: int = 24) -> list[Path]:
    """Distinct gray crops of the camera picture, written as folder/NAME."""
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.camera()[i * side : (i + 1) * side, :side]).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("flags", [[], ["--overwrite"], ["--skip-existing"]])
@pytest.mark.parametrize("spelling", ["same", "folder-into-itself", "hard-link", "symlink"])
def test_restore_never_writes_over_an_input_whatever_the_flags(tmp_path, capsys, no_model, flags, spelling):
    (src,) = small_images(tmp_path / "d", ["x.png"])
    before = digest(src)
    inputs, output = [str(src)], tmp_path / "out.png"
    if spelling == "same":
        output = src
    elif spelling == "folder-into-itself":
        inputs, output = [str(src.parent)], src.parent
    elif spelling == "hard-link":
        os.link(src, output)
    else:
        output.symlink_to(src)
    assert main(["restore", "--task", "denoise", *inputs, "-o", str(output), *flags]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rednet: error: ")
    assert "is an input file; refusing to overwrite it" in err
    assert digest(src) == before


def test_restore_mirrors_the_folders_below_a_glob_and_refuses_two_inputs_for_one_output(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    small_images(Path("d"), ["a/x.png", "b/x.png", "top.png"])
    assert main(["restore", "--task", "denoise", "d/**/*.png", "-o", "out", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["restored"] == 3
    written = sorted(str(p.relative_to("out")) for p in Path("out").rglob("*") if p.is_file())
    assert written == ["a/x.png", "b/x.png", "top.png"]
    for name in ("a/x.png", "b/x.png"):  # each output is the restored image of its own input
        assert (
            np.abs(np.asarray(Image.open(f"out/{name}"), float) - np.asarray(Image.open(f"d/{name}"))).mean()
            < 8
        )
    # Named one by one (or as two folders), the two x.png would be one output: refused before any work.
    from rednet import zoo

    monkeypatch.setattr(zoo, "load", lambda *a, **k: pytest.fail("a model was loaded"))
    for inputs in (["d/a/x.png", "d/b/x.png"], ["d/a", "d/b"]):
        assert main(["restore", "--task", "denoise", *inputs, "-o", "out2", "--overwrite"]) == 1
        err = capsys.readouterr().err
        assert err == (
            "rednet: error: out2/x.png: both d/a/x.png and d/b/x.png would be restored to this file; "
            "restore them in separate runs or to separate folders\n"
        )
    assert not Path("out2").exists()


def test_restore_refuses_existing_outputs_naming_the_flags_before_any_model_loads(tmp_path, capsys, no_model):
    src, other = small_images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "out").mkdir()
    existing = tmp_path / "out" / "a.png"
    existing.write_bytes(b"keep me")
    for argv in ([str(src), "-o", str(existing)], [str(src), str(other), "-o", str(tmp_path / "out")]):
        assert main(["restore", "--task", "denoise", *argv]) == 1
        err = capsys.readouterr().err
        assert err == (
            f"rednet: error: {existing}: already exists; "
            "pass --overwrite to replace or --skip-existing to keep\n"
        )
    assert existing.read_bytes() == b"keep me" and not (tmp_path / "out" / "b.png").exists()
    assert main(["degrade", "--task", "denoise", "--sigma", "5", str(src), "-o", str(existing)]) == 1
    assert (
        capsys.readouterr().err
        == f"rednet: error: {existing}: already exists; pass --overwrite to replace it\n"
    )


def test_a_folder_restore_killed_with_sigkill_is_finished_by_skip_existing(tmp_path, capsys):
    """kill -9 mid-folder: every visible output is complete, and a re-run with --skip-existing restores
    only the rest, removes the killed run's temporary files, and exits 0."""
    import signal
    import subprocess
    import sys
    import time

    from rednet import io

    names = [f"{i}.png" for i in range(6)]
    small_images(tmp_path / "in", names, side=80)
    out = tmp_path / "out"
    argv = ["restore", "--task", "denoise", str(tmp_path / "in"), "-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(io.__file__).parents[2])}
    child = subprocess.Popen([sys.executable, "-m", "rednet", *argv], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and any(io.is_image_file(p) for p in out.iterdir())):
            assert child.poll() is None and time.monotonic() < deadline, (
                "the run ended before its first output"
            )
            time.sleep(0.005)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    done = sorted(p.name for p in out.iterdir() if io.is_image_file(p))
    assert 1 <= len(done) < len(names), "the kill did not land mid-folder"
    for name in done:  # complete: readable, full size
        assert io.read_image(out / name)[0].shape == (1, 1, 80, 80)
    stale = out / f".{names[-1]}.0badc0de.rednet-tmp"  # as a kill during a write leaves it
    stale.write_bytes(b"")
    assert main([*argv, "--skip-existing", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped"] == len(done) and summary["restored"] == len(names) - len(done)
    assert {r["input"] for r in summary["results"] if r.get("skipped")} == {
        str(tmp_path / "in" / n) for n in done
    }
    assert sorted(p.name for p in out.iterdir()) == names  # no temporary file left
    for name in done:
        assert io.read_image(out / name)[0].shape == (1, 1, 80, 80)


def test_degrade_is_seeded(photo, tmp_path):
    outs = []
    for i, seed in enumerate([1, 1, 2]):
        out = tmp_path / f"n{i}.png"
        main(
            [
                "degrade",
                "--task",
                "inpaint",
                "--damage",
                "0.5",
                str(photo),
                "-o",
                str(out),
                "--seed",
                str(seed),
            ]
        )
        outs.append(np.asarray(Image.open(out)))
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])


def test_degrade_saves_the_inpainting_mask(photo, tmp_path):
    mask = tmp_path / "mask.png"
    out = tmp_path / "o.png"
    assert (
        main(
            [
                "degrade",
                "--task",
                "inpaint",
                "--damage",
                "text",
                str(photo),
                "-o",
                str(out),
                "--save-mask",
                str(mask),
            ]
        )
        == 0
    )
    values = np.unique(np.asarray(Image.open(mask)))
    assert set(values.tolist()) == {0, 255}


def test_eval_continues_past_a_bad_file_reports_it_and_exits_1(tmp_path, capsys):
    Image.fromarray(data.camera()[:64, :64]).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_text("not an image")
    Image.fromarray(data.moon()[:64, :64]).save(tmp_path / "c.png")
    code = main(["eval", "--task", "jpeg", "--quality", "20", "--dataset", str(tmp_path), "--json"])
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert code == 1
    assert [r["name"] for r in result["images"]] == ["a.png", "c.png"]
    assert result["failed"][0]["name"] == "b.png"
    assert "b.png: not an image" in captured.err


def test_eval_save_writes_each_restored_image_and_jobs_give_the_same_scores(tmp_path, capsys):
    images = tmp_path / "set"
    images.mkdir()
    for name, photo in (("a", data.camera()), ("b", data.moon()), ("c", data.coins())):
        Image.fromarray(photo[:48, :48]).save(images / f"{name}.png")
    argv = ["eval", "--task", "jpeg", "--quality", "10", "--dataset", str(images), "--method", "identity"]
    argv += ["--json"]
    assert main([*argv, "--save", str(tmp_path / "out")]) == 0
    serial = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]
    saved = np.asarray(Image.open(tmp_path / "out" / "b.png"), dtype=np.float64) / 255
    clean = np.asarray(Image.open(images / "b.png"), dtype=np.float64) / 255
    saved_psnr = 10 * np.log10(1 / np.mean((saved - clean) ** 2))
    assert saved_psnr == pytest.approx(serial["images"][1]["psnr"], abs=1e-6)  # the image that was scored
    assert main([*argv, "--jobs", "2"]) == 0
    parallel = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in parallel["images"]] == ["a.png", "b.png", "c.png"]
    assert [r["psnr"] for r in parallel["images"]] == [r["psnr"] for r in serial["images"]]  # same seeds


def test_eval_save_refuses_two_test_images_that_would_share_an_output_name(tmp_path, capsys):
    images = tmp_path / "set"
    images.mkdir()
    Image.fromarray(data.camera()[:32, :32]).save(images / "a.png")
    Image.fromarray(data.moon()[:32, :32]).save(images / "a.bmp")
    argv = ["eval", "--task", "jpeg", "--quality", "10", "--dataset", str(images), "--method", "identity"]
    assert main([*argv, "--save", str(tmp_path / "out")]) == 1
    assert "a.png" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_eval_save_never_writes_over_a_test_image(tmp_path, capsys):
    Image.fromarray(data.camera()[:32, :32]).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    argv = ["eval", "--task", "sr", "--scale", "2", "--dataset", str(tmp_path), "--method", "bicubic"]
    assert main([*argv, "--save", str(tmp_path)]) == 1
    assert (tmp_path / "a.png").read_bytes() == before
    assert capsys.readouterr().err.startswith("rednet: error:")


def test_eval_prints_a_readable_table(tmp_path, capsys):
    Image.fromarray(data.camera()[:64, :64]).save(tmp_path / "a.png")
    assert (
        main(["eval", "--task", "sr", "--scale", "2", "--dataset", str(tmp_path), "--method", "bicubic"]) == 0
    )
    out = capsys.readouterr().out
    assert re.search(r"^a\.png\s+\d+\.\d\d\s+0\.\d{4}", out, flags=re.MULTILINE)
    assert "shave=2" in out and re.search(r"^mean\s", out, flags=re.MULTILINE)


def test_eval_missing_data_root_names_path_and_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("REDNET_DATA", raising=False)
    code = main(
        [
            "eval",
            "--task",
            "jpeg",
            "--quality",
            "10",
            "--dataset",
            "LIVE1",
            "--data-root",
            str(tmp_path / "nope"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "nope" in err and "REDNET_DATA" in err


def test_demo_restores_the_sample_and_reports_a_gain(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "-o", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "denoise-color" and result["gain_db"] > 8
    assert Image.open(out).size == (512 * 2 + 8, 512)


def test_boolean_flags_are_not_type_bool():
    # "--quantize False" must not silently mean True (KAIR's --x8 bug): it is --quantize / --no-quantize.
    args = build_parser().parse_args(
        ["eval", "--task", "sr", "--scale", "2", "--dataset", "x", "--no-quantize"]
    )
    assert args.quantize is False


def test_the_command_keeps_freed_memory_unless_the_environment_says_0(monkeypatch, capsys):
    import rednet.infer

    calls = []
    monkeypatch.setattr(rednet.infer, "reuse_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.delenv("REDNET_REUSE_FREED_MEMORY", raising=False)
    assert main(["models"]) == 0
    assert calls == [1]
    monkeypatch.setenv("REDNET_REUSE_FREED_MEMORY", "0")
    assert main(["models"]) == 0
    assert calls == [1]


@pytest.fixture
def mask_model(tmp_path) -> Path:
    """A small random mask-aware inpainting model, exported as a user's own would be."""
    import torch

    from rednet.model import REDNet, REDNetConfig
    from rednet.zoo import save_weights

    torch.manual_seed(0)
    model = REDNet(REDNetConfig(depth=4, width=8, channels=3, mask_input=True))
    return save_weights(tmp_path / "inpaint-mask.safetensors", model, {"name": "tiny", "task": "inpaint"})


def test_restore_with_a_mask_fills_only_the_white_pixels(photo, mask_model, tmp_path):
    a = np.zeros((96, 120), np.uint8)
    a[40:50, 20:90] = 255
    Image.fromarray(a).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    argv = ["restore", "--task", "inpaint", str(photo), "-o", str(out), "--weights", str(mask_model)]
    assert main([*argv, "--mask", str(tmp_path / "mask.png")]) == 0
    before, after = np.asarray(Image.open(photo)), np.asarray(Image.open(out))
    assert after.shape == before.shape
    assert np.array_equal(after[a == 0], before[a == 0])
    assert not np.array_equal(after[a > 0], before[a > 0])


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ("wrong-size", "the mask is 119x96 pixels but the image is 120x96"),
        ("colour", "a mask must be black and white (1-bit or gray), but this one is colour (RGB)"),
        ("missing", "file not found"),
    ],
)
def test_restore_refuses_a_mask_of_the_wrong_size_or_mode_in_one_line(
    photo, mask_model, tmp_path, capsys, mask, message
):
    path = tmp_path / f"{mask}.png"
    if mask == "wrong-size":
        Image.fromarray(np.zeros((96, 119), np.uint8)).save(path)
    elif mask == "colour":
        Image.fromarray(data.astronaut()[:96, :120]).save(path)
    out = tmp_path / "out.png"
    argv = ["restore", "--task", "inpaint", str(photo), "-o", str(out), "--weights", str(mask_model)]
    assert main([*argv, "--mask", str(path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert any(message in line and line.startswith("rednet: error: ") for line in err), err
    assert "Traceback" not in "\n".join(err)
    assert not out.exists()


def test_restore_mask_and_kernel_flags_belong_to_their_tasks(photo, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert main(["restore", "--task", "denoise", str(photo), "-o", str(out), "--mask", str(photo)]) == 1
    assert "--mask is for --task inpaint" in capsys.readouterr().err
    assert main(["restore", "--task", "denoise", str(photo), "-o", str(out), "--kernel", "disk"]) == 1
    assert "--kernel is for --task deblur" in capsys.readouterr().err
    assert not out.exists()


def test_blind_inpainting_finds_the_damage_then_fills_it_unless_a_model_is_named(photo, tmp_path, capsys):
    import json

    from rednet.zoo import detect_and_fill

    detector, filler = detect_and_fill()
    argv = ["restore", "--task", "inpaint", str(photo), "--json"]
    for flags, used in (([], f"{detector} + {filler}"), (["--model", "inpaint"], "inpaint")):
        assert main([*argv, "-o", str(tmp_path / f"{len(flags)}.png"), *flags]) == 0
        assert json.loads(capsys.readouterr().out)["results"][0]["model"] == used
    assert main([*argv, "-o", str(tmp_path / "x.png"), "--model", detector]) == 1
    assert "finds damage, it does not restore" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_blind_inpainting_saves_the_mask_it_found_and_takes_it_back(photo, tmp_path, capsys):
    """The mask workflow: the found damage is written where --mask reads it, covers the overlaid text, and
    given back with --mask it gives the same restoration."""
    text, truth = tmp_path / "text.png", tmp_path / "truth.png"
    degrade = ["degrade", "--task", "inpaint", "--damage", "text", str(photo), "-o", str(text)]
    assert main([*degrade, "--save-mask", str(truth)]) == 0
    found, blind, given = tmp_path / "found.png", tmp_path / "blind.png", tmp_path / "given.png"
    assert main(["restore", "--task", "inpaint", str(text), "-o", str(blind), "--save-mask", str(found)]) == 0
    damaged = np.asarray(Image.open(found)) > 127
    true_damage = np.asarray(Image.open(truth).convert("L")) > 127
    assert damaged.shape == true_damage.shape
    assert (damaged & true_damage).sum() > 0.8 * true_damage.sum()  # the text is found ...
    assert (damaged & ~true_damage).sum() < 0.5 * true_damage.sum()  # ... and not much else
    assert main(["restore", "--task", "inpaint", str(text), "-o", str(given), "--mask", str(found)]) == 0
    assert np.array_equal(np.asarray(Image.open(given)), np.asarray(Image.open(blind)))
    # several inputs: one NAME-mask.png per input in a folder, beside the outputs if asked
    assert (
        main(
            [
                "restore",
                "--task",
                "inpaint",
                str(text),
                str(photo),
                "-o",
                str(tmp_path / "out"),
                "--save-mask",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "photo-mask.png",
        "photo.png",
        "text-mask.png",
        "text.png",
    ]
    capsys.readouterr()


def test_save_mask_is_only_for_blind_inpainting(photo, tmp_path, capsys):
    out, found = tmp_path / "out.png", tmp_path / "found.png"
    for flags in (
        ["--task", "denoise"],
        ["--task", "inpaint", "--mask", str(photo)],
        ["--task", "inpaint", "--model", "inpaint"],
    ):
        assert main(["restore", *flags, str(photo), "-o", str(out), "--save-mask", str(found)]) == 1
        assert "--save-mask writes the damage that blind inpainting finds" in capsys.readouterr().err
    other = tmp_path / "other.png"
    Image.open(photo).save(other)
    assert (
        main(
            [
                "restore",
                "--task",
                "inpaint",
                str(photo),
                str(other),
                "-o",
                str(tmp_path / "o"),
                "--save-mask",
                str(found),
            ]
        )
        == 1
    )
    assert f"--save-mask {found}: several inputs need a folder, not a file name" in capsys.readouterr().err
    assert not out.exists() and not found.exists()


def test_save_mask_is_refused_without_the_damage_model(photo, tmp_path, capsys, monkeypatch):
    from rednet import zoo

    monkeypatch.setattr(zoo, "detect_and_fill", lambda: None)  # as if inpaint-detect were not installed
    out, found = tmp_path / "out.png", tmp_path / "found.png"
    assert main(["restore", "--task", "inpaint", str(photo), "-o", str(out), "--save-mask", str(found)]) == 1
    assert "--save-mask needs the damage model" in capsys.readouterr().err
    assert not out.exists() and not found.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "--task", "inpaint", "--dataset", "Set5"],
        ["degrade", "--task", "inpaint", "in.png", "-o", "out.png"],
        ["train"],
    ],
)
def test_the_old_mask_flag_of_a_damage_spec_names_its_new_name(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*command, "--mask", "text"])
    assert stop.value.code == 2
    assert "--mask is now --damage" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize(
    ("task", "flags", "model"),
    [("denoise", ["--sigma", "25"], "denoise-color-fast"), ("sr", ["--scale", "2"], "sr-fast")],
)
def test_restore_fast_runs_the_tasks_shipped_fast_model_and_restores(tmp_path, capsys, task, flags, model):
    clean = data.astronaut()[100:196, 150:246]  # 96 x 96 RGB
    source = tmp_path / "clean.png"
    Image.fromarray(clean).save(source)
    damaged, out = tmp_path / "damaged.png", tmp_path / "out.png"
    assert main(["degrade", "--task", task, *flags, str(source), "-o", str(damaged)]) == 0
    assert main(["restore", "--task", task, *flags, "--fast", str(damaged), "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["results"][0]["model"] == model
    restored = np.asarray(Image.open(out)).astype(np.float64)
    if task == "sr":  # against the bicubic enlargement of the small image
        baseline = np.asarray(Image.open(damaged).resize((96, 96), Image.BICUBIC)).astype(np.float64)
    else:
        baseline = np.asarray(Image.open(damaged)).astype(np.float64)
    mse = lambda a: float(((a - clean.astype(np.float64)) ** 2).mean())  # noqa: E731
    assert mse(restored) < mse(baseline) * 0.9


def test_restore_fast_for_a_task_without_a_fast_model_says_so_in_one_line(photo, tmp_path, capsys):
    assert main(["restore", "--task", "jpeg", "--fast", str(photo), "-o", str(tmp_path / "o.png")]) == 1
    assert "no shipped fast (strided) model for task 'jpeg' yet" in capsys.readouterr().err
