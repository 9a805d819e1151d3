"""The shared config reader: types, optionals, choices and overrides, each error naming file and key."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra.config import build, load_dataclass, read_yaml_mapping
from infra.errors import UserError


@dataclass
class Inner:
    lr: float = 0.1
    name: str = "x"
    tag: str | None = None
    sizes: list[int] = field(default_factory=list)
    weights: dict[str, str] = field(default_factory=dict)
    frozen: bool | list[str] = False


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    mode: str = "a"


def test_values_are_converted_to_their_types(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  lr: 1e-5\n  name: null\n  sizes: [1, 2]\n  weights: {maml: w.pt}\n")
    config = load_dataclass(Outer, path, ["inner.tag=t", "mode=b"], {"mode": ("a", "b")})
    assert config.inner.lr == 1e-5 and isinstance(config.inner.lr, float)  # YAML 1.1 reads 1e-5 as a string
    assert (config.inner.name, config.inner.tag, config.mode) == ("", "t", "b")
    assert config.inner.sizes == [1, 2] and config.inner.weights == {"maml": "w.pt"}
    assert load_dataclass(Outer, None).inner == Inner()
    cleared = load_dataclass(Outer, None, ["inner.tag=t", "inner.tag=", "inner.name="])
    assert cleared.inner.tag is None and cleared.inner.name == ""  # key= clears: None, or "" for a plain str


def test_a_union_takes_the_first_type_that_fits() -> None:
    assert build(Inner, {"frozen": True}, "c.yaml").frozen is True
    assert build(Inner, {"frozen": ["clip"]}, "c.yaml").frozen == ["clip"]
    assert build(Inner, {"frozen": []}, "c.yaml").frozen == []


def test_choices_apply_to_none_too() -> None:
    choices = {"inner.tag": ("a", "b")}
    with pytest.raises(UserError, match="c.yaml: inner.tag must be one of a, b, got null"):
        build(Outer, {"inner": {"tag": None}}, "c.yaml", choices=choices)
    assert build(Outer, {"inner": {"tag": None}}, "c.yaml", choices={"inner.tag": (None, "a")}).inner.tag is None


@pytest.mark.parametrize(("data", "message"), [
    ({"inner": {"lrr": 1}}, r"c.yaml: unknown key inner.lrr \(known: lr, name, tag, sizes, weights, frozen\)"),
    ({"inner": {"lr": "fast"}}, "c.yaml: inner.lr must be float, got 'fast'"),
    ({"inner": {"sizes": [1, "two"]}}, r"inner.sizes\[1\] must be int"),
    ({"inner": {"sizes": 3}}, "inner.sizes must be a list"),
    ({"inner": 3}, "inner must be a mapping"),
    ({"mode": "c"}, "mode must be one of a, b, got 'c'"),
    ({"inner": {"tag": True}}, "inner.tag must be str"),
    ({"inner": {"frozen": "clip"}}, "c.yaml: inner.frozen must be bool or list, got 'clip'"),
    ({"inner": {"frozen": None}}, "c.yaml: inner.frozen must be bool or list, got None"),
    ({"inner": {"frozen": [1]}}, r"c.yaml: inner.frozen\[0\] must be str, got 1"),
])
def test_errors_name_the_file_and_key(data: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build(Outer, data, "c.yaml", choices={"mode": ("a", "b")})


def test_bad_files_and_overrides(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="config file not found"):
        load_dataclass(Outer, tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(UserError, match="list.yaml: expected a mapping of sections at the top level"):
        load_dataclass(Outer, tmp_path / "list.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_dataclass(Outer, tmp_path / "empty.yaml") == Outer()
    with pytest.raises(UserError, match="empty.yaml: expected a mapping of sections at the top level, got None"):
        read_yaml_mapping(tmp_path / "empty.yaml", allow_empty=False)
    (tmp_path / "broken.yaml").write_text("inner: [\n")
    with pytest.raises(UserError, match="broken.yaml: not valid YAML"):
        load_dataclass(Outer, tmp_path / "broken.yaml")
    with pytest.raises(UserError, match="expected key=value"):
        load_dataclass(Outer, None, ["inner.lr"])
    with pytest.raises(UserError, match="mode is not a section"):
        load_dataclass(Outer, None, ["mode=b", "mode.x=1"])
    with pytest.raises(UserError, match=r"config \(with overrides\): inner.lr must be float"):
        load_dataclass(Outer, None, ["inner.lr=[1]"])


def test_the_vqa_side_does_not_load_open_clip() -> None:
    code = "import sys, medvqa.train, medvqa.cli; print('open_clip' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
