"""Every registered VQA head, the type classifier: published sizes, shapes, gradients, routing, settings."""
import pytest
import torch

from infra.errors import UserError
from medvqa.models import HEADS, QuestionTypeClassifier, create_encoder, create_head, list_heads
from medvqa.models.visual import VisualFrontEnd

NTOKEN = 1177  # published VQA-RAD dictionary
PUBLISHED_SIZES = {"all": 458, "closed": 56, "open": 431}  # VQA-RAD answer sets
TINY_SIZES = {"all": 7, "closed": 3, "open": 5}


def _visual(frozen: bool = False) -> VisualFrontEnd:
    encoders = {name: create_encoder(name) for name in ("maml", "cdae")}
    for encoder in encoders.values():
        if frozen:
            encoder.freeze()
    return VisualFrontEnd(encoders)


def _tiny(name, frozen=False):
    return create_head(name, {"hidden_dim": 16}, ntoken=20, answer_sizes=TINY_SIZES, visual=_visual(frozen))


def _inputs(batch=4):
    tokens = torch.randint(0, 21, (batch, 12))
    images = {"gray84": torch.rand(batch, 1, 84, 84), "gray128": torch.rand(batch, 1, 128, 128)}
    is_open = torch.arange(batch) % 2 == 1
    return tokens, images, is_open


@pytest.mark.parametrize(("name", "expected"), [
    ("mevf_ban", 19_635_640),
    ("mevf_san", 13_985_199),
    ("qcr", 40_531_547),  # 40.5 M as published
])
def test_published_parameter_counts(name, expected):
    model = create_head(name, {}, ntoken=NTOKEN, answer_sizes=PUBLISHED_SIZES, visual=_visual())
    assert sum(p.numel() for p in model.parameters()) == expected


def test_type_classifier_published_size():
    assert sum(p.numel() for p in QuestionTypeClassifier(NTOKEN).parameters()) == 7_420_475


@pytest.mark.parametrize("name", list_heads())
def test_every_head_forward_backward(name):
    model = _tiny(name).train()
    tokens, images, is_open = _inputs()
    out = model(tokens, images=images, is_open=is_open)
    assert out.logits.shape == (4, model.num_answers)
    assert model.num_answers == sum(TINY_SIZES[branch] for branch in model.branches)
    targets = torch.zeros(4, model.num_answers)
    targets[:, 0] = 1
    loss = model.loss(out, targets, is_open)
    assert out.aux_loss is not None and torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"No gradient for {name}: {missing}"


def test_heads_own_their_defaults():
    """A setting a config omits takes the head's own default (QCR: GRU and mean BCE, MEVF: LSTM and per-question)."""
    qcr, mevf = HEADS.settings("qcr", {}), HEADS.settings("mevf_ban", {})
    assert (qcr.rnn, qcr.loss_reduction) == ("GRU", "mean")
    assert (mevf.rnn, mevf.loss_reduction) == ("LSTM", "instance")
    assert isinstance(_tiny("qcr").q_emb.rnn, torch.nn.GRU)
    san = create_head("mevf_san", {"hidden_dim": 16, "num_stacks": 3}, ntoken=20, answer_sizes=TINY_SIZES,
                      visual=_visual())
    assert len(san.fusion.stacks) == 3


def test_unknown_head_setting_names_the_head_and_valid_keys():
    with pytest.raises(UserError, match=r"model.head.glimpse is not a setting of VQA head 'qcr' \(valid: rnn, "
                                        r"hidden_dim, glimpses"):
        create_head("qcr", {"glimpse": 3}, ntoken=20, answer_sizes=TINY_SIZES, visual=_visual())


def test_qcr_routes_each_question_to_one_branch():
    model = _tiny("qcr").eval()
    tokens, images, is_open = _inputs()
    logits = model(tokens, images=images, is_open=is_open).logits  # [4, 3 + 5]
    assert model.routed_by_type
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
    model = QuestionTypeClassifier(20, hidden_dim=16).eval()
    tokens, _, _ = _inputs(8)
    assert torch.equal(model(tokens), model(tokens))


def test_mevf_frozen_branches_train_only_the_head():
    model = _tiny("mevf_ban", frozen=True)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("visual.encoders.") for n in frozen)
    assert all(p.requires_grad for n, p in model.visual.projections.named_parameters())


def test_unknown_head_lists_known_ones():
    with pytest.raises(UserError, match="unknown VQA head 'mevf_gan': choose from: .*mevf_ban.*qcr"):
        create_head("mevf_gan", ntoken=20, answer_sizes=TINY_SIZES, visual=_visual())
