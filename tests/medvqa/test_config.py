"""Config loading: every shipped YAML validates; typos, wrong types and bad overrides are one-line errors."""
from pathlib import Path

import pytest

from infra.errors import UserError
from medvqa.config import load_config, run_identity, upgrade_run_config

CONFIG_ROOT = Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted(p for d in ("vqa_rad", "slake", "synthetic") for p in (CONFIG_ROOT / d).glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config.model.name in ("mevf_ban", "mevf_san", "qcr")
    assert config.data.root.startswith("data/")


def test_published_recipes():
    mevf = load_config(CONFIG_ROOT / "vqa_rad" / "mevf_ban.yaml")
    assert (mevf.train.lr, mevf.train.batch_size, mevf.train.epochs, mevf.train.seed) == (0.005, 32, 20, 1204)
    assert mevf.train.decay_epochs == [10, 12, 14, 16, 18] and mevf.train.clip_norm == 0.25
    qcr = load_config(CONFIG_ROOT / "vqa_rad" / "qcr.yaml")
    assert (qcr.train.lr, qcr.train.batch_size, qcr.train.epochs, qcr.train.seed) == (0.002, 64, 200, 88)


def test_overrides_are_typed():
    config = load_config(None, ["train.epochs=3", "data.root=/x", "train.lr=1", "data.train_splits=[train, val]"])
    assert config.train.epochs == 3 and config.data.root == "/x"
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.data.train_splits == ["train", "val"]


@pytest.mark.parametrize(("override", "message"), [
    ("train.epoch=3", "unknown key train.epoch"),
    ("trian.epochs=3", "unknown key trian"),
    ("train.epochs=three", "train.epochs must be int"),
    ("train.deterministic=1", "train.deterministic must be bool"),
    ("train.epochs", "expected key=value"),
])
def test_bad_overrides(override, message):
    with pytest.raises(UserError, match=message):
        load_config(None, [override])


def test_bad_file(tmp_path):
    (tmp_path / "c.yaml").write_text("model:\n  nmae: qcr\n")
    with pytest.raises(UserError, match=r"c.yaml: unknown key model.nmae"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_head_and_encoder_settings_are_validated_and_spelled_out(tmp_path):
    config = load_config(None, ["model.name=qcr", "model.head.hidden_dim=64"])
    assert config.model.head["hidden_dim"] == 64 and config.model.head["rnn"] == "GRU"
    assert config.model.encoders["cdae"] == {"weights": "", "reconstruction_weight": 0.001}
    with pytest.raises(UserError, match=r"model.head.num_stacks is not a setting of VQA head 'qcr' \(valid: "):
        load_config(None, ["model.name=qcr", "model.head.num_stacks=3"])
    with pytest.raises(UserError, match=r"model.encoders.maml.reconstruction_weight is not a setting of visual "
                                        r"encoder 'maml' \(valid: weights\)"):
        load_config(None, ["model.encoders.maml.reconstruction_weight=1"])
    with pytest.raises(UserError, match="model.encoders.clip sets an encoder the model does not use"):
        load_config(None, ["model.encoders.clip.weights=x.pt"])
    with pytest.raises(UserError, match="model.name 'concat_mlp' is not a VQA head; choose from: mevf_ban"):
        load_config(None, ["model.name=concat_mlp"])
    (tmp_path / "old.yaml").write_text("model:\n  name: qcr\n  rnn: GRU\n")
    with pytest.raises(UserError, match=r"old.yaml: model.rnn is a setting of the head: write it under model.head"):
        load_config(tmp_path / "old.yaml")


def test_a_variant_config_states_only_what_differs(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  name: qcr\n  head: {hidden_dim: 64, glimpses: 4}\n"
                                        "  encoders:\n    maml: {weights: a.weights}\ntrain: {epochs: 5}\n")
    (tmp_path / "variant.yaml").write_text("base: base.yaml\nmodel:\n  visual: [cdae]\n  head: {glimpses: 10}\n"
                                           "  encoders: {maml: null}\n")
    config = load_config(tmp_path / "variant.yaml")
    assert (config.model.head["hidden_dim"], config.model.head["glimpses"], config.train.epochs) == (64, 10, 5)
    assert list(config.model.encoders) == ["cdae"]
    (tmp_path / "deeper.yaml").write_text("base: variant.yaml\n")
    with pytest.raises(UserError, match="cannot name a base of its own"):
        load_config(tmp_path / "deeper.yaml")
    (tmp_path / "lost.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(UserError, match="lost.yaml: base file not found"):
        load_config(tmp_path / "lost.yaml")


def test_a_run_config_of_the_flat_layout_is_upgraded():
    flat = {"model": {"name": "qcr", "visual": ["clip", "cdae"], "freeze_visual": ["clip"],
                      "weights": {"clip": "c.pth", "cdae": "data_RAD/pretrained_ae.pth", "maml": "m.weights"},
                      "rnn": "GRU",
                      "hidden_dim": 32, "reconstruction_weight": 0.01, "loss_reduction": "mean"}}
    assert upgrade_run_config(flat)["model"] == {
        "name": "qcr", "visual": ["clip", "cdae"], "freeze_visual": ["clip"],
        "head": {"rnn": "GRU", "hidden_dim": 32, "loss_reduction": "mean"},
        "encoders": {"clip": {"weights": "c.pth"}, "cdae": {"weights": "prepared", "reconstruction_weight": 0.01}}}
    current = {"model": {"name": "qcr", "head": {}}}
    assert upgrade_run_config(current) is current


def test_run_identity_ignores_runtime_settings_and_spellings_of_the_same_freeze():
    def identity(*overrides):
        return run_identity(load_config(None, list(overrides)).to_dict())

    base = identity("model.freeze_visual=true")
    assert identity("model.freeze_visual=[cdae, maml]", "train.device=cuda", "data.root=/elsewhere") == base
    assert identity("model.freeze_visual=[]") == identity("model.freeze_visual=false")
    assert identity("model.freeze_visual=[maml]") == identity("model.freeze_visual=[maml]", "train.threads=1")
    unknown = {"model": {"visual": ["maml"], "freeze_visual": ["clip"]}}  # refused later, by the model's builder
    assert run_identity(unknown) == unknown
    assert run_identity({"model": {"freeze_visual": 1}}) == {"model": {"freeze_visual": 1}}
    assert identity("model.freeze_visual=[maml]") != base
    assert identity("model.freeze_visual=true", "train.lr=0.01") != base


@pytest.mark.parametrize("key, other_value", [("bf16_visual", "false"), ("tf32", "ieee")])
def test_a_setting_added_later_at_its_earlier_behaviour_keeps_archived_runs_matching(key, other_value):
    current = load_config(None, []).to_dict()
    archived = {**current, "train": {k: v for k, v in current["train"].items() if k != key}}
    assert run_identity(current) == run_identity(archived)
    assert run_identity(load_config(None, [f"train.{key}={other_value}"]).to_dict()) != run_identity(archived)


def test_tf32_mode_is_one_of_the_named_modes():
    assert load_config(None, ["train.tf32=all"]).train.tf32 == "all"
    with pytest.raises(UserError, match=r"train.tf32 must be one of ieee, cudnn, all, got 'half'"):
        load_config(None, ["train.tf32=half"])
