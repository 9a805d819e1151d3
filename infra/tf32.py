"""TensorFloat-32 on CUDA: which float32 operations may round their inputs to 10 bits of mantissa.

On Ampere and later GPUs, PyTorch's default lets cuDNN's convolutions and RNNs use TF32 tensor cores
while matrix products stay IEEE float32, so a "float32" GPU run does not do the arithmetic of a float32
CPU run. The mode is a training setting so that a run says which arithmetic it had; CPUs ignore it.
"""
from __future__ import annotations

import torch

# mode -> (cuDNN convolutions and RNNs in TF32, matrix products in TF32); "ieee": TF32 nowhere
TF32_MODES = {"ieee": (False, False), "cudnn": (True, False), "all": (True, True)}
DEFAULT_TF32 = "cudnn"  # PyTorch's own default


def set_tf32(mode: str) -> None:
    """Set this process's TF32 use on CUDA to ``mode`` (a key of ``TF32_MODES``)."""
    cudnn, matmul = TF32_MODES[mode]
    backends = torch.backends
    if hasattr(backends.cudnn, "conv"):  # per-operator settings (PyTorch 2.9 and later)
        backends.cudnn.conv.fp32_precision = backends.cudnn.rnn.fp32_precision = "tf32" if cudnn else "ieee"
        backends.cuda.matmul.fp32_precision = "tf32" if matmul else "ieee"
    else:
        backends.cudnn.allow_tf32 = cudnn
        backends.cuda.matmul.allow_tf32 = matmul
