"""The registries of heads and visual encoders: build by name, refuse duplicates, name the known ones."""
from dataclasses import dataclass

import pytest

from infra.errors import UserError
from infra.registry import Registry
from medvqa.models import create_encoder, create_head, list_encoders, list_heads


def test_known_names():
    assert {"mevf_ban", "mevf_san", "qcr"} <= set(list_heads())
    assert {"maml", "cdae", "clip"} <= set(list_encoders())


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UserError, match="unknown VQA head .ban.: choose from: .*mevf_ban"):
        create_head("ban")
    with pytest.raises(UserError, match="unknown visual encoder .vgg.: choose from: .*maml"):
        create_encoder("vgg")


@dataclass
class Size:
    n: int = 1


def test_registration_validates_settings_and_refuses_duplicates():
    registry: Registry[int] = Registry("thing")
    registry.register("one", settings=Size)(lambda settings, offset=0: settings.n + offset)
    assert registry.create("one") == 1 and registry.create("one", {"n": 3}, offset=1) == 4
    with pytest.raises(UserError, match=r"here: n must be int, got 'x'"):
        registry.create("one", {"n": "x"}, where="here")
    with pytest.raises(UserError, match=r"here: m is not a setting of thing 'one' \(valid: n\)"):
        registry.create("one", {"m": 1}, where="here")
    with pytest.raises(ValueError, match="thing 'one' is already registered"):
        registry.register("one", settings=Size)(lambda settings: 2)
    with pytest.raises(TypeError, match="settings must be a dataclass"):
        registry.register("two", settings=dict)


def test_encoders_know_their_names():
    assert create_encoder("maml").name == "maml"
