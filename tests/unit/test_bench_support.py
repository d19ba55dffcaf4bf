"""The benchmark suite's own parts that can be checked without timing anything."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from bench.common import process_tree_cpu_seconds, sample_captions, sample_jpegs
from bench.suite import main as suite_main


def test_sample_inputs_are_distinct_decodable_jpegs_and_captions():
    jpegs = sample_jpegs(12)
    assert len(set(jpegs)) == 12
    assert all(Image.open(io.BytesIO(data)).format == "JPEG" for data in jpegs)
    assert sample_jpegs(3) == jpegs[:3], "deterministic across runs"
    captions = sample_captions(50)
    assert len(set(captions)) == 50


def test_cpu_seconds_cover_this_process():
    before = process_tree_cpu_seconds(os.getpid())
    sum(i * i for i in range(300_000))
    assert process_tree_cpu_seconds(os.getpid()) >= before > 0


def test_an_unknown_part_is_refused(capsys):
    with pytest.raises(SystemExit):
        suite_main(["--part", "P9"])
    assert "unknown part" in capsys.readouterr().err
