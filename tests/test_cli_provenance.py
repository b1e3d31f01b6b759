"""``butler provenance``, ``butler verify`` and ``butler compare --why``, on the demo's repositories."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from prov.model import ProvDocument

from butler.cli import cli
from butler.demo import run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return run_demo(str(tmp_path_factory.mktemp("demo") / "demo"), echo=lambda line: None, keep=True)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_compare_why_names_the_changed_threshold(demo):
    result = invoke("compare", demo.v1, demo.v2, "src", "visit=101", "--why")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("why src differs (v1 -> v2)")
    assert "  visit=101 detector=0:" in lines and "  visit=101 detector=1:" in lines
    assert lines.count("    setting threshold: changed: 5.0 -> 4.0") == 2
    assert "input" not in result.output  # the same raws and calibrations went into both
    assert "compare src" not in result.output  # --why prints that section alone


def test_compare_shows_why_with_the_differences(demo):
    result = invoke("compare", demo.v1, demo.v2, "src", "visit=102", "--format", "json")
    why = json.loads(result.output)["why"]
    assert [(w["settings"][0]["where"], w["settings"][0]["a"], w["settings"][0]["b"]) for w in why] == \
        [("threshold", 5.0, 4.0)] * 2
    assert all(w["inputs"] == [] for w in why)


def test_provenance_text_names_inputs_by_path_and_digest(demo):
    result = invoke("provenance", demo.v2, "src", "visit=101", "detector=0")
    assert result.exit_code == 0, result.output
    input_root = Path(demo.input)
    bias = next(input_root.glob("bias/*/bias_d00_*.fits"))
    digest = hashlib.sha256(bias.read_bytes()).hexdigest()
    assert f"{bias}  sha256:{digest}" in result.output
    assert "quantum process; config {\"threshold\": 4.0}" in result.output
    assert "raw detector=0 visit=101" in result.output and "(no provenance record" in result.output


def test_provenance_formats(demo):
    data = json.loads(invoke("provenance", demo.v2, "src", "visit=101", "detector=0", "--format", "json").output)
    assert data["datasetType"] == "src" and data["config"] == {"threshold": 4.0}
    assert sorted(item["datasetType"] for item in data["inputs"]) == ["bias", "flat", "raw"]

    text = invoke("provenance", demo.v2, "src", "visit=101", "detector=0", "--format", "prov-json").output
    document = ProvDocument.deserialize(content=text, format="json")
    entities = [r for r in document.get_records() if r.get_type().localpart == "Entity"]
    assert len(entities) == 4  # src, raw, bias, flat
    assert any(r.get_type().localpart == "Derivation" for r in document.get_records())

    dot = invoke("provenance", demo.v2, "src", "visit=101", "detector=0", "--format", "dot").output
    assert dot.startswith("digraph provenance {") and dot.count(" -> ") == 3


@pytest.mark.skipif(shutil.which("dot") is not None, reason="the dot program is installed")
def test_png_without_dot_says_how_to_install_it(demo, tmp_path):
    png = tmp_path / "lineage.png"
    result = invoke("provenance", demo.v2, "src", "visit=101", "detector=0", "--png", str(png))
    assert result.exit_code == 2 and "apt-get install graphviz" in result.output
    assert not png.exists()


def test_provenance_of_a_dataset_without_record_is_an_error(demo):
    result = invoke("provenance", demo.input, "raw", "visit=101", "detector=0")
    assert result.exit_code == 2 and "no provenance record of raw/" in result.output


def test_verify_catches_a_flipped_byte_and_a_missing_file(demo, tmp_path):
    copy = tmp_path / "v2"
    shutil.copytree(demo.v2, copy)
    clean = invoke("verify", str(copy))
    assert clean.exit_code == 0 and clean.output.strip().endswith("12 recorded files re-hashed: OK")
    victim = next(copy.glob("src/*/*.fits"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    gone = next(copy.glob("postISRCCD/*/*.fits"))
    gone.unlink()
    result = invoke("verify", str(copy))
    assert result.exit_code == 1
    relative = str(victim.relative_to(copy))
    assert any(line.startswith("DIFFERS") and relative in line for line in result.output.splitlines())
    assert any(line.startswith("MISSING") and str(gone.relative_to(copy)) in line
               for line in result.output.splitlines())
    only_post = invoke("verify", str(copy), "src", "--format", "json")
    problems = json.loads(only_post.output)["problems"]
    assert [(p["path"], p["problem"]) for p in problems] == [(relative, "differs")]


def test_verify_reports_files_without_records(demo):
    result = invoke("verify", demo.input)
    assert result.exit_code == 1
    no_record = [line for line in result.output.splitlines() if line.startswith("NO RECORD")]
    assert len(no_record) == 6 and all("raw/" in line for line in no_record)  # ingested, never put
