"""infra.tf32: a run's ``train.tf32`` mode reaches PyTorch's CUDA settings (CPUs ignore them)."""
from __future__ import annotations

import pytest
import torch

from infra.tf32 import DEFAULT_TF32, TF32_MODES, set_tf32

PER_OPERATOR = hasattr(torch.backends.cudnn, "conv")


def tf32_in_use() -> tuple[bool, bool]:
    """(cuDNN convolutions and RNNs, matrix products) as PyTorch holds them now."""
    backends = torch.backends
    if PER_OPERATOR:
        convolutions, rnns = backends.cudnn.conv.fp32_precision, backends.cudnn.rnn.fp32_precision
        assert convolutions == rnns
        return convolutions == "tf32", backends.cuda.matmul.fp32_precision == "tf32"
    return backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32


@pytest.fixture
def restore_tf32():
    backends = torch.backends
    if PER_OPERATOR:
        saved = [(op, op.fp32_precision) for op in (backends.cudnn.conv, backends.cudnn.rnn, backends.cuda.matmul)]
        yield
        for op, value in saved:
            op.fp32_precision = value
    else:
        saved = backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32
        yield
        backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("mode", TF32_MODES)
def test_each_mode_sets_cudnn_and_matrix_products(restore_tf32, mode):
    set_tf32("all" if mode == "ieee" else "ieee")  # from the other extreme
    set_tf32(mode)
    assert tf32_in_use() == TF32_MODES[mode]


def test_the_default_is_pytorchs_own(restore_tf32):
    assert TF32_MODES[DEFAULT_TF32] == (True, False)
