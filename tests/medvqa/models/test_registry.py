"""The registries of heads and visual encoders: build by name, refuse duplicates, name the known ones."""
import pytest

from medvqa.models import create_encoder, create_model, list_encoders, list_models
from medvqa.models.registry import Registry


def test_known_names():
    assert {"mevf_ban", "mevf_san", "qcr", "type_classifier"} <= set(list_models())
    assert {"maml", "cdae"} <= set(list_encoders())


def test_unknown_names_list_the_known_ones():
    with pytest.raises(KeyError, match="unknown model 'ban'; known: .*mevf_ban"):
        create_model("ban")
    with pytest.raises(KeyError, match="unknown visual encoder 'vgg'; known: .*maml"):
        create_encoder("vgg")


def test_duplicate_registration_is_refused():
    registry: Registry[int] = Registry("thing")
    registry.register("one")(lambda: 1)
    assert registry.create("one") == 1
    with pytest.raises(ValueError, match="thing 'one' is already registered"):
        registry.register("one")(lambda: 2)


def test_encoders_know_their_names():
    assert create_encoder("maml").name == "maml"
