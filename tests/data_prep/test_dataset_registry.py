"""The dataset registry: a dataset registered outside data_prep gets its own ``medvqa prepare`` flags and
prepares; the built-in datasets keep their flags and carry the facts evaluation reads."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from data_prep.datasets import DATASETS, facts, option, published_answer_vocab, register_dataset, registered_name
from data_prep.prepare import PrepareOptions, prepare
from data_prep.records import VQARecord
from data_prep.source import RawDataset
from infra.errors import UserError
from medvqa.cli import main
from medvqa.data import PreparedDataset


@dataclass(frozen=True)
class ShadesOptions:
    images: int = option(20, "number of flat gray images")
    darkest: int = option(0, "gray level of the first image", aliases=("--first-level",))
    ask_open: bool = option(True, "also ask the open question")


@register_dataset("test-shades", ShadesOptions, prepared_name="shades", published_answer_vocab="train+val")
def read_shades(options: ShadesOptions, source: Path | None) -> RawDataset:
    """Flat images, a fifth of them test: is it bright (closed), how bright (open)."""
    levels = {f"shade_{i:02d}.png": options.darkest + 10 * i for i in range(options.images)}
    records = []
    for index, (image_id, level) in enumerate(levels.items()):
        split = "test" if index >= options.images * 4 // 5 else "train"
        qa = [("Is the image bright?", "yes" if level > 100 else "no", "CLOSED")]
        if options.ask_open:
            qa.append(("How bright is the image?", "bright" if level > 100 else "dark", "OPEN"))
        records += [VQARecord(qid=f"{image_id}:{n}", image_id=image_id, question=q, answer=a, answer_type=t,
                              question_type="ATTRIB", split=split) for n, (q, a, t) in enumerate(qa)]
    return RawDataset("shades", records, lambda image_id: Image.new("L", (32, 32), levels[image_id]),
                      source="flat shades")


def _help(capsys: pytest.CaptureFixture, dataset: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", dataset, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_a_registered_dataset_gets_its_own_flags(capsys: pytest.CaptureFixture) -> None:
    shades = _help(capsys, "test-shades")
    assert "test-shades options" in shades and "number of flat gray images (default: 20)" in shades
    assert all(flag in shades for flag in ("--images", "--darkest", "--first-level", "--no-ask-open"))
    assert "--layout" not in shades and "--language" not in shades
    rad = _help(capsys, "vqa-rad")
    assert "--layout {auto,split,raw}" in rad and "--darkest" not in rad and "--synthetic-images" not in rad
    assert "--language" in _help(capsys, "slake")
    synthetic = _help(capsys, "synthetic")
    assert "--synthetic-images" in synthetic and "--seed" in synthetic


def test_a_registered_dataset_prepares_from_its_flags(tmp_path: Path) -> None:
    out = tmp_path / "shades"
    assert main(["prepare", "test-shades", "--out", str(out), "--images", "30", "--first-level", "5",
                 "--no-ask-open", "--image-specs", "gray8"]) == 0
    ds = PreparedDataset(out)
    assert ds.name == "shades" and len(ds.all_records) == 30 and ds.images("gray8")[0, 0, 0] == 5
    assert {r.answer_type for r in ds.all_records} == {"CLOSED"} and ds.encoder_weights("maml") is None
    assert registered_name(ds.name) == "test-shades" and published_answer_vocab(ds.name) == "train+val"


def test_options_from_the_api(tmp_path: Path) -> None:
    prepare("test-shades", tmp_path / "a", PrepareOptions(image_specs=["gray8"], dataset_options={"images": 10}))
    prepare("test-shades", tmp_path / "b", PrepareOptions(image_specs=["gray8"], dataset_options=ShadesOptions(10)))
    assert (tmp_path / "a" / "records.jsonl").read_bytes() == (tmp_path / "b" / "records.jsonl").read_bytes()
    with pytest.raises(UserError, match="colour is not a setting of dataset 'test-shades' .valid: images, darkest"):
        prepare("test-shades", tmp_path / "c", PrepareOptions(dataset_options={"colour": "red"}))
    with pytest.raises(UserError, match="dataset 'test-shades' takes ShadesOptions, got SyntheticOptions"):
        prepare("test-shades", tmp_path / "c", PrepareOptions(dataset_options=DATASETS.settings("synthetic")))


def test_bad_flag_values_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["prepare", "test-shades", "--out", str(tmp_path / "x"), "--images", "many"]) == 2
    assert "argument --images: invalid int value: 'many'" in capsys.readouterr().err
    assert main(["prepare", "vqa-rad", "--out", str(tmp_path / "x"), "--darkest", "3"]) == 2
    assert "unrecognized arguments: --darkest 3" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_plugin_file_registers_a_dataset(tmp_path: Path) -> None:
    plugin = tmp_path / "tiny_plugin.py"
    plugin.write_text(
        "from dataclasses import dataclass, replace\n"
        "from data_prep.datasets import option, register_dataset\n"
        "from data_prep.synthetic import generate\n\n"
        "@dataclass(frozen=True)\n"
        "class Options:\n"
        "    count: int = option(12, 'images')\n\n"
        "@register_dataset('plugin-synthetic', Options)\n"
        "def read(options, source):\n"
        "    return replace(generate(options.count, seed=1), name='plugin_synthetic')\n")
    out = tmp_path / "out"
    assert main(["prepare", "plugin-synthetic", "--plugin", str(plugin), "--out", str(out), "--count", "20",
                 "--image-specs", "gray8"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "plugin_synthetic" and summary["images"] == 20


def test_facts_of_the_built_in_datasets() -> None:
    assert {"vqa-rad", "slake", "synthetic"} <= set(DATASETS.names())
    assert published_answer_vocab("vqa_rad") == "train" and published_answer_vocab("slake") == "train+test"
    assert published_answer_vocab("synthetic") is None and published_answer_vocab("unknown") is None
    assert [registered_name(n) for n in ("vqa_rad", "slake", "synthetic")] == ["vqa-rad", "slake", "synthetic"]
    assert facts("vqa-rad").prepared_name == "vqa_rad"
    with pytest.raises(UserError, match="unknown dataset 'vqa-med'"):
        facts("vqa-med")


def test_a_reader_must_name_its_data_as_registered(tmp_path: Path) -> None:
    @register_dataset("test-misnamed", ShadesOptions)
    def read_misnamed(options: ShadesOptions, source: Path | None) -> RawDataset:
        return read_shades(options, source)

    with pytest.raises(UserError, match="names the data 'shades', registered as 'test_misnamed'"):
        prepare("test-misnamed", tmp_path / "out", PrepareOptions(image_specs=["gray8"]))
    assert not list(tmp_path.iterdir())


def test_two_datasets_cannot_share_a_prepared_name() -> None:
    with pytest.raises(ValueError, match="'shades' is already the prepared name of dataset 'test-shades'"):
        register_dataset("test-shades-again", ShadesOptions, prepared_name="shades")
