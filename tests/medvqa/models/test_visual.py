"""Visual branches: published weights, shapes, the encoder registry, the feature cache, frozen mode."""
import json
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from infra.errors import UserError
from medvqa.models import FeatureCache, create_encoder, list_encoders
from medvqa.models.cdae import ConvTranspose2d
from medvqa.models.visual import VisualFrontEnd, calibrate_batchnorm, encoder_device, frozen_features, images_to_tensor


def test_registry_lists_and_rejects():
    assert {"maml", "cdae"} <= set(list_encoders())
    with pytest.raises(UserError, match="choose from: .*maml"):
        create_encoder("nope")


def test_encoder_device_follows_its_tensors():
    assert encoder_device(create_encoder("maml")) == torch.device("cpu")
    assert encoder_device(torch.nn.BatchNorm1d(4, affine=False, device="meta")) == torch.device("meta")  # buffers
    assert encoder_device(torch.nn.Identity()) == torch.device("cpu")  # no tensors: inputs stay where they are


def test_maml_loads_tensorflow_weights_transposed(data_rad):
    raw = pickle.load(open(data_rad / "pretrained_maml.weights", "rb"))
    enc = create_encoder("maml", {"weights": str(data_rad / "pretrained_maml.weights")})
    for i, conv in enumerate(enc.convs, 1):
        # OIHW[o, i, h, w] == HWIO[h, w, i, o]
        assert np.array_equal(conv.weight.detach().numpy(), raw[f"conv{i}"].transpose(3, 2, 0, 1))
        assert np.array_equal(conv.bias.detach().numpy(), raw[f"b{i}"])
    norm = enc.norms[0]
    assert (norm.eps, norm.momentum) == (1e-5, 0.05)
    assert enc.output_dim == 64 and enc.input_spec.key == "gray84"
    assert enc.encode(torch.rand(2, 1, 84, 84)).shape == (2, 64)
    assert sum(p.numel() for p in enc.parameters()) == 111_936


def _real_image(data_rad, size):
    path = sorted((data_rad.parent / "VQA_RAD Image Folder").glob("synpic*.jpg"))[0]
    gray = np.asarray(Image.open(path).convert("L").resize((size, size)), dtype=np.uint8)
    return images_to_tensor(gray[None], create_encoder("cdae").input_spec)


def test_cdae_loads_and_reconstructs_real_images(data_rad):
    enc = create_encoder("cdae", {"weights": str(data_rad / "pretrained_ae.pth")})
    x = _real_image(data_rad, 128)  # [1, 1, 128, 128]
    code = enc.encode(x)
    assert code.shape == (1, 16384) and enc.projection_dim == 64
    pretrained = enc.auxiliary_loss(x, code).item() / 0.001
    fresh = create_encoder("cdae")
    untrained = fresh.auxiliary_loss(x, fresh.encode(x)).item() / 0.001
    assert pretrained < 0.2 * untrained  # the published auto-encoder really reconstructs


def test_cdae_matches_the_published_layer_order_bit_for_bit(data_rad):
    """The encoder pools before its ReLU, runs its ReLUs in place and adds the transposed convolutions' biases
    after them; values and gradients stay those of the published conv -> ReLU -> pool order with PyTorch's
    transposed convolution, except the summation order of those two bias gradients."""
    enc = create_encoder("cdae", {"weights": str(data_rad / "pretrained_ae.pth")})
    x = torch.cat([_real_image(data_rad, 128), torch.rand(3, 1, 128, 128)]).to(memory_format=torch.channels_last)

    def published(images):
        h = F.max_pool2d(F.relu(enc.conv1(images)), 2)
        h = F.max_pool2d(F.relu(enc.conv2(h)), 2)
        code = F.relu(enc.conv3(h)).flatten(1)
        transposed = nn.ConvTranspose2d.forward  # the bias inside the convolution
        y = F.relu(transposed(enc.tran_conv1, code.view(-1, 16, 32, 32)))  # decoded from the flat code, as in training
        y = F.relu(transposed(enc.tran_conv2, F.relu(enc.conv4(y))))
        return code, torch.sigmoid(enc.conv5(y))

    def ours(images):
        code = enc.encode(images)
        return code, enc.decode(code.view(-1, 16, 32, 32))

    results = []
    for forward in (published, ours):
        code, recon = forward(x)
        enc.zero_grad()
        (F.mse_loss(recon, x) + 1e-3 * code.square().mean()).backward()
        results.append((code.detach(), recon.detach(), {n: p.grad.clone() for n, p in enc.named_parameters()}))
    (code_a, recon_a, grads_a), (code_b, recon_b, grads_b) = results
    assert torch.equal(code_a, code_b) and torch.equal(recon_a, recon_b)
    reordered = {"tran_conv1.bias", "tran_conv2.bias"}  # one sum over the batch and the pixels, in another order
    assert all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a if n not in reordered)
    for name in reordered:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-5, atol=1e-7)
        assert not torch.equal(grads_b[name], torch.zeros_like(grads_b[name]))


@pytest.mark.parametrize("bias, output_size", [(True, None), (False, None), (True, [65, 65])])
def test_transposed_convolution_adds_its_bias_afterwards_with_the_same_values(bias, output_size):
    torch.manual_seed(0)
    ours = ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=0 if output_size else 1, bias=bias)
    x = torch.randn(2, 4, 33, 33)
    expected = nn.ConvTranspose2d.forward(ours, x, output_size)
    assert expected.shape[-1] == (65 if output_size else 66)
    assert torch.equal(ours(x, output_size), expected)


def test_cdae_rejects_a_foreign_state_dict(tmp_path):
    torch.save({"conv1.weight": torch.zeros(64, 1, 3, 3), "other": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="unexpected keys \\['other'\\]"):
        create_encoder("cdae", {"weights": str(tmp_path / "bad.pth")})


def test_feature_cache_encodes_each_image_once(tmp_path):
    enc = create_encoder("maml")
    enc.freeze()
    calls = []

    def load(ids):
        calls.append(list(ids))
        return torch.stack([torch.full((1, 84, 84), float(i[-1]) / 10) for i in ids])

    first = frozen_features(enc, FeatureCache(tmp_path), ["a1", "b2", "a1"], load, "bicubic-digest")
    again = frozen_features(enc, FeatureCache(tmp_path), ["b2", "c3"], load, "bicubic-digest")
    assert calls == [["a1", "b2"], ["c3"]]
    assert first.shape == (3, 64) and torch.equal(first[1], again[0]) and torch.equal(first[0], first[2])
    assert torch.allclose(again[1], enc.encode(load(["c3"]))[0])
    frozen_features(enc, FeatureCache(tmp_path), ["a1"], load, "nearest-digest")  # same ids, other images
    assert calls[-1] == ["a1"]
    metas = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("maml-*/meta.json"))]
    assert sorted(meta["images"] for meta in metas) == ["bicubic-digest", "nearest-digest"]
    assert all(meta["input_spec"]["key"] == "gray84" and meta["items"] == "image id" for meta in metas)
    other = create_encoder("maml")  # different random weights -> different identity
    assert other.identity() != enc.identity() and enc.identity().startswith("maml-")


def test_calibrated_frozen_maml_uses_data_statistics():
    enc = create_encoder("maml")
    images = torch.rand(40, 1, 84, 84)
    calibrate_batchnorm(enc, images, batch_size=40)
    enc.freeze()
    first = torch.relu(enc.convs[0](images))
    assert torch.allclose(enc.norms[0].running_mean, first.mean((0, 2, 3)), atol=1e-5)
    assert enc.norms[0](first).mean((0, 2, 3)).abs().max() < 1e-4
    assert enc.norms[0].momentum == 0.05 and not enc.norms[0].training


def test_frontend_frozen_uses_features_and_no_aux_loss():
    encoders = {"maml": create_encoder("maml"), "cdae": create_encoder("cdae")}
    for enc in encoders.values():
        enc.freeze()
    front = VisualFrontEnd(encoders).train()
    assert front.output_dim == 128
    assert not encoders["maml"].training  # frozen encoders stay in eval mode
    out = front(features={"maml": torch.randn(3, 64), "cdae": torch.randn(3, 16384)})
    assert out.v.shape == (3, 1, 128) and out.aux_loss is None
    with pytest.raises(KeyError, match="cdae"):
        front(features={"maml": torch.randn(3, 64)})


def test_frontend_finetuned_returns_reconstruction_loss():
    front = VisualFrontEnd({"maml": create_encoder("maml"), "cdae": create_encoder("cdae")}).train()
    out = front(images={"gray84": torch.rand(2, 1, 84, 84), "gray128": torch.rand(2, 1, 128, 128)})
    assert out.v.shape == (2, 1, 128) and out.aux_loss.item() > 0
