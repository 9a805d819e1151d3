"""bfloat16 autocast keeps the answer classifier, the question RNN, the attention softmaxes and, when asked,
the visual encoders in float32."""
from __future__ import annotations

import torch

from medvqa.models.ban import BiAttention
from medvqa.models.cdae import CDAEEncoder
from medvqa.models.classifier import AnswerClassifier
from medvqa.models.question import QuestionAttention, QuestionEncoder
from medvqa.models.visual import VisualFrontEnd

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def test_classifier_runs_in_float32_under_autocast() -> None:
    torch.manual_seed(0)
    classifier = AnswerClassifier(64, 128, 400).eval()
    x = torch.randn(8, 64).bfloat16()  # as the bf16 fusion layers hand it over
    with torch.autocast(**BF16):
        logits = classifier(x)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, classifier(x.float()), rtol=0, atol=0)  # the same float32 arithmetic


def test_question_rnn_and_attention_softmaxes_stay_float32() -> None:
    torch.manual_seed(0)
    encoder, attention = QuestionEncoder(300, 64), QuestionAttention(300, 64)
    bilinear = BiAttention(v_dim=32, q_dim=64, h_dim=48, glimpses=2).eval()
    emb = torch.randn(4, 12, 300)
    with torch.autocast(**BF16):
        states = encoder(emb)
        attended = attention(emb, states)
        maps = bilinear(torch.randn(4, 5, 32), states)
    assert states.dtype == torch.float32
    torch.testing.assert_close(states, encoder(emb), rtol=0, atol=0)
    assert attended.shape == (4, 64)
    assert maps.dtype == torch.float32
    torch.testing.assert_close(maps.sum((2, 3)), torch.ones(4, 2), rtol=0, atol=1e-6)


def test_float32_encoders_keep_the_visual_branch_and_its_loss_in_float32_under_autocast() -> None:
    torch.manual_seed(0)
    images = {"gray128": torch.randn(2, 1, 128, 128)}
    lowered = VisualFrontEnd({"cdae": CDAEEncoder()})
    kept = VisualFrontEnd({"cdae": CDAEEncoder()}, float32_encoders=True)
    kept.load_state_dict(lowered.state_dict())
    eager = lowered(images)
    with torch.autocast(**BF16):
        in_float32, in_bfloat16 = kept(images), lowered(images)
    torch.testing.assert_close(in_float32.aux_loss, eager.aux_loss, rtol=0, atol=0)  # the float32 reconstruction
    assert in_bfloat16.aux_loss != eager.aux_loss
    # the projection after the encoder belongs to the head: it runs in bfloat16 either way
    assert in_float32.v.dtype == in_bfloat16.v.dtype == torch.bfloat16
