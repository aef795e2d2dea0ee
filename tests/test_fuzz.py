"""rednet fuzz: bounded runs over read_image and rednet restore, its mutations, its hang check."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rednet.cli import build_parser, main
from rednet.fuzz import FuzzTarget, error_kind, run_fuzz
from rednet.fuzz_corpus import MUTATIONS, png_chunks, seed_corpus
from rednet.io import ImageError, read_image

CORPUS = seed_corpus()


def test_a_bounded_fuzz_of_read_image_has_no_unexpected_outcome_hang_or_crash():
    result = run_fuzz(500, seed=0)
    assert result["cases"] == 500
    assert result["unexpected"] == 0, result["samples"]
    assert result["outcomes"]["decoded"] > 0 and result["outcomes"]["error"] > 0
    assert set(result["cases_by_mutation"]) == {m.__name__ for m in MUTATIONS}
    assert len(result["cases_by_seed_file"]) == len(CORPUS)


def test_a_bounded_fuzz_through_rednet_restore_has_no_unexpected_outcome():
    result = run_fuzz(40, seed=0, target=FuzzTarget(command=main, max_pixels=65_536))
    assert result["cases"] == 40 and result["target"] == "restore"
    assert result["unexpected"] == 0, result["samples"]
    assert result["outcomes"]["restored"] > 0 and result["outcomes"]["error"] > 0


def test_a_case_over_the_time_limit_is_a_hang_and_its_worker_is_replaced():
    result = run_fuzz(2, seed=0, time_limit=1e-4)
    assert result["outcomes"] == {"hang": 2} and result["unexpected"] == 2
    assert result["worker_restarts"] == 2 and result["samples"][0].startswith("hang: ")


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_seed_file_decodes_but_gif_which_is_refused_in_one_line(name, tmp_path):
    path = tmp_path / name
    path.write_bytes(CORPUS[name])
    if name.endswith(".gif"):
        with pytest.raises(ImageError, match="unsupported image format GIF"):
            read_image(path)
    else:
        x, _ = read_image(path)
        assert x.shape[-2:] == (24, 24)


def _crcs_are_right(data: bytes) -> bool:
    at, ok = 8, True
    for kind, body in png_chunks(data):
        stored = struct.unpack(">I", data[at + 8 + len(body) : at + 12 + len(body)])[0]
        ok &= stored == zlib.crc32(kind + body)
        at += 12 + len(body)
    return ok


@settings(max_examples=60, deadline=None, database=None)
@given(st.data())
def test_png_mutations_leave_chunks_that_parse_with_correct_crcs(data):
    mutation = data.draw(st.sampled_from([m for m in MUTATIONS if m.__name__.startswith(("png", "icc"))]))
    name = data.draw(st.sampled_from(["rgb8-exif-icc.png", "palette-transparent.png", "gray16.png"]))
    mutated = data.draw(mutation(CORPUS[name]))
    assert png_chunks(mutated) is not None and _crcs_are_right(mutated)


def test_an_error_kind_drops_the_file_name_details_and_numbers():
    assert error_kind("/tmp/x/case.png: truncated or corrupt image file (broken data stream)") == (
        "truncated or corrupt image file"
    )
    message = "rednet: error: /tmp/x/case.tif: 400 pixels exceeds the limit of 100 (set REDNET_MAX_PIXELS)"
    assert error_kind(message) == "N pixels exceeds the limit of N"


def test_the_cli_has_fuzz_with_cases_seed_and_restore():
    args = build_parser().parse_args(["fuzz", "--cases", "7", "--seed", "3", "--restore"])
    assert (args.cases, args.seed, args.restore, args.run.__name__) == (7, 3, True, "cmd_fuzz")
