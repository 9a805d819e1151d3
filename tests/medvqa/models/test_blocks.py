"""Shapes, masks and reference checks of the shared blocks: FCNet, embedding, question encoders, BAN, SAN."""
import numpy as np
import pytest
import torch

from medvqa.models.ban import BAN, BCNet, BiAttention
from medvqa.models.classifier import AnswerClassifier
from medvqa.models.embedding import WordEmbedding
from medvqa.models.fc import FCNet
from medvqa.models.question import AttendedQuestionMLP, QuestionAttention, QuestionEncoder
from medvqa.models.san import SAN

torch.manual_seed(0)


def test_fcnet_layers_and_shape():
    net = FCNet([8, 16, 4], activation="ReLU", dropout=0.2)
    kinds = [type(m).__name__.replace("Parametrized", "") for m in net.main]
    assert kinds == ["Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU"]
    assert net(torch.randn(3, 5, 8)).shape == (3, 5, 4)
    linear = FCNet([8, 4], activation="").main[0]
    assert linear.parametrizations.weight.original0.numel() == 1  # one gain for the whole matrix


def test_word_embedding_glove_tfidf_and_padding(data_rad):
    glove = np.load(data_rad / "glove6b_init_300d.npy")
    ntoken = glove.shape[0]
    emb = WordEmbedding(ntoken, tfidf=True)
    emb.init_weights(glove, 2 * glove)
    tokens = torch.tensor([[0, 5, ntoken, ntoken]])
    out = emb(tokens)
    assert out.shape == (1, 4, 600)
    assert torch.equal(out[0, 1, :300], torch.from_numpy(glove[5]))
    assert torch.equal(out[0, 1, 300:], torch.from_numpy(2 * glove[5]))
    assert torch.count_nonzero(out[0, 2:]) == 0
    out.sum().backward()
    assert torch.count_nonzero(emb.emb.weight.grad[ntoken]) == 0
    with pytest.raises(ValueError, match="shape"):
        emb.init_weights(glove[:10], glove[:10])


@pytest.mark.parametrize("rnn", ["LSTM", "GRU"])
def test_question_encoder(rnn):
    enc = QuestionEncoder(600, 32, rnn)
    assert enc(torch.randn(2, 12, 600)).shape == (2, 12, 32)
    with pytest.raises(ValueError, match="rnn"):
        QuestionEncoder(600, 32, "RNN")


def test_question_attention_is_a_convex_combination_of_states():
    att = QuestionAttention(6, 4)
    states = torch.randn(3, 12, 4)
    out = att(torch.randn(3, 12, 6), states)
    assert out.shape == (3, 4)
    assert torch.all(out <= states.max(1).values + 1e-6) and torch.all(out >= states.min(1).values - 1e-6)


def test_attended_question_mlp_eval_is_deterministic():
    net = AttendedQuestionMLP(20, (16, 32, 16, 2)).eval()
    tokens = torch.randint(0, 21, (4, 12))
    assert torch.equal(net(tokens), net(tokens))


def test_bilinear_attention_masks_empty_visual_vectors_and_normalises():
    att = BiAttention(v_dim=8, q_dim=16, h_dim=16, glimpses=2).eval()
    v = torch.randn(2, 3, 8)
    v[0, 1] = 0  # an empty visual slot
    p = att(v, torch.randn(2, 12, 16))
    assert p.shape == (2, 2, 3, 12)
    assert torch.allclose(p.sum((2, 3)), torch.ones(2, 2))
    assert torch.count_nonzero(p[0, :, 1]) == 0


def test_bcnet_pool_matches_naive_bilinear_sum():
    net = BCNet(8, 16, 6, None, k=1).eval()
    v, q = torch.randn(2, 3, 8), torch.randn(2, 5, 16)
    att = torch.rand(2, 3, 5)
    v_, q_ = net.v_net(v), net.q_net(q)
    naive = torch.zeros(2, 6)
    for b in range(2):
        for i in range(3):
            for j in range(5):
                naive[b] += att[b, i, j] * v_[b, i] * q_[b, j]
    assert torch.allclose(net.pool(v, q, att), naive, atol=1e-5)


def test_ban_and_san_output_shapes():
    v, q = torch.randn(4, 1, 128), torch.randn(4, 12, 32)
    assert BAN(128, 32, glimpses=2)(v, q).shape == (4, 32)
    san = SAN(128, 32, 32, num_stacks=2)
    assert len(san.stacks) == 2
    assert san(v, q[:, -1]).shape == (4, 32)


def test_classifier_layout():
    clf = AnswerClassifier(32, 64, 7, dropout=0.5)
    assert [type(m).__name__.replace("Parametrized", "") for m in clf.main] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert clf(torch.randn(2, 32)).shape == (2, 7)
