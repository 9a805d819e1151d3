"""MEVF-BAN, MEVF-SAN, QCR+TCR and the type classifier: published sizes, shapes, gradients, routing."""
import pytest
import torch

from medvqa.models import create_model, list_models

NTOKEN = 1177  # published VQA-RAD dictionary
TINY = dict(ntoken=20, hidden_dim=16)


def _tiny(name):
    if name == "type_classifier":
        return create_model(name, ntoken=20, hidden_dim=16)
    sizes = dict(num_closed=3, num_open=5) if name == "qcr" else dict(num_answers=7)
    return create_model(name, **TINY, **sizes)


def _inputs(batch=4):
    tokens = torch.randint(0, 21, (batch, 12))
    images = {"gray84": torch.rand(batch, 1, 84, 84), "gray128": torch.rand(batch, 1, 128, 128)}
    is_open = torch.arange(batch) % 2 == 1
    return tokens, images, is_open


@pytest.mark.parametrize(("name", "sizes", "expected"), [
    ("mevf_ban", dict(num_answers=458), 19_635_640),
    ("mevf_san", dict(num_answers=458), 13_985_199),
    ("qcr", dict(num_closed=56, num_open=431), 40_531_547),  # 40.5 M as published
    ("type_classifier", {}, 7_420_475),
])
def test_published_parameter_counts(name, sizes, expected):
    model = create_model(name, ntoken=NTOKEN, **sizes)
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("name", list_models())
def test_every_model_forward_backward(name):
    model = _tiny(name).train()
    tokens, images, is_open = _inputs()
    if name == "type_classifier":
        loss = torch.nn.functional.cross_entropy(model(tokens), is_open.long())
    else:
        out = model(tokens, images=images, is_open=is_open)
        assert out.logits.shape == (4, model.num_answers)
        targets = torch.zeros(4, model.num_answers)
        targets[:, 0] = 1
        loss = model.loss(out, targets, is_open)
        assert out.aux_loss is not None
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"No gradient for {name}: {missing}"


def test_qcr_routes_each_question_to_one_branch():
    model = _tiny("qcr").eval()
    tokens, images, is_open = _inputs()
    logits = model(tokens, images=images, is_open=is_open).logits  # [4, 3 + 5]
    assert torch.isinf(logits[~is_open, 3:]).all() and torch.isfinite(logits[~is_open, :3]).all()
    assert torch.isinf(logits[is_open, :3]).all() and torch.isfinite(logits[is_open, 3:]).all()
    with pytest.raises(ValueError, match="is_open"):
        model(tokens, images=images)


def test_qcr_single_branch_batch_and_eval_determinism():
    model = _tiny("qcr").eval()
    tokens, images, _ = _inputs()
    all_open = torch.ones(4, dtype=torch.bool)
    a = model(tokens, images=images, is_open=all_open).logits
    assert torch.equal(a, model(tokens, images=images, is_open=all_open).logits)


def test_type_classifier_is_deterministic_in_eval_mode():
    model = _tiny("type_classifier").eval()
    tokens, _, _ = _inputs(8)
    assert torch.equal(model(tokens), model(tokens))


def test_mevf_frozen_branches_train_only_the_head():
    model = create_model("mevf_ban", **TINY, num_answers=7, freeze_visual=True)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("visual.encoders.") for n in frozen)
    assert all(p.requires_grad for n, p in model.visual.projections.named_parameters())


def test_unknown_model_lists_known_ones():
    with pytest.raises(KeyError, match="known: .*mevf_ban.*qcr"):
        create_model("mevf_gan")
