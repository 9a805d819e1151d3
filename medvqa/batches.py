"""Preloaded tensors for training and evaluation: every split and image cache lives in memory as tensors.

Batches are index selections on these tensors, so the data pipeline costs almost nothing next to
the model.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from data_prep.input_spec import InputSpec
from infra.feature_cache import FeatureCache
from medvqa.data import AnswerVocab, Dictionary, PreparedDataset, VQARecord
from medvqa.models.visual import VisualEncoder, calibrate_batchnorm, frozen_features, images_to_tensor


def answer_list(vocab: AnswerVocab, branches: list[tuple[str, int]]) -> list[str]:
    """The answer string at each logit position of a head with ``branches``."""
    return [answer for name, _ in branches for answer in getattr(vocab, name)]


@dataclass
class SplitTensors:
    """One or more splits as tensors, in record order."""

    records: list[VQARecord]
    tokens: Tensor  # [N, 12] long
    labels: Tensor  # [N] long: logit position of the gold answer in its gold branch; -1 if not in the answer set
    is_open: Tensor  # [N] bool: gold branch is open
    image_rows: Tensor  # [N] long: row in the image caches

    def __len__(self) -> int:
        return len(self.records)

    def to(self, device: torch.device) -> "SplitTensors":
        return SplitTensors(self.records, self.tokens.to(device), self.labels.to(device), self.is_open.to(device),
                            self.image_rows.to(device))

    def subset(self, keep: list[bool]) -> "SplitTensors":
        idx = torch.tensor([i for i, k in enumerate(keep) if k], dtype=torch.long)
        return SplitTensors([self.records[i] for i in idx.tolist()], self.tokens[idx], self.labels[idx],
                            self.is_open[idx], self.image_rows[idx])

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Tensor]:
        """Index tensors of consecutive (or, with ``generator``, shuffled) batches."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        yield from order.split(batch_size)


def split_tensors(ds: PreparedDataset, splits: list[str], dictionary: Dictionary, vocab: AnswerVocab,
                  branches: list[tuple[str, int]]) -> SplitTensors:
    records = [r for split in splits for r in ds.records(split)]
    offsets, start = {}, 0
    for name, n in branches:
        offsets[name] = start
        start += n
    labels, is_open = [], []
    for record in records:
        branch = vocab.branch_of(record)
        label_branch = branch if "all" not in offsets else "all"
        label = vocab.label(record.answer, label_branch)
        labels.append(-1 if label is None else offsets[label_branch] + label)
        is_open.append(branch == "open")
    return SplitTensors(
        records=records,
        tokens=torch.tensor([dictionary.encode(r.question) for r in records], dtype=torch.long).view(-1, 12),
        labels=torch.tensor(labels, dtype=torch.long),
        is_open=torch.tensor(is_open, dtype=torch.bool),
        image_rows=torch.tensor([ds.image_row(r.image_id) for r in records], dtype=torch.long),
    )


def one_hot(labels: Tensor, n: int) -> Tensor:
    """``[B]`` positions (-1: unanswerable) -> ``[B, n]`` float targets, all-zero rows for -1."""
    targets = torch.zeros(labels.size(0), n + 1, device=labels.device)
    targets[torch.arange(labels.size(0), device=labels.device), labels.clamp(min=-1)] = 1.0
    return targets[:, :n]


class VisualInputs:
    """Per encoder, either all images of the dataset (trainable) or their cached encodings (frozen)."""

    def __init__(self, ds: PreparedDataset, encoders: dict[str, VisualEncoder], cache_dir: Path,
                 calibration_rows: Tensor | None, channels_last: bool) -> None:
        pixels: dict[str, Tensor] = {}  # spec key -> [N_images, C, H, W], converted when first needed

        def images_of(spec: InputSpec) -> Tensor:
            if spec.key not in pixels:
                x = images_to_tensor(ds.images(spec.key), spec)
                pixels[spec.key] = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            return pixels[spec.key]

        self.features: dict[str, Tensor] = {}  # frozen encoder name -> [N_images, D]
        ids = ds.image_ids
        rows = {image_id: i for i, image_id in enumerate(ids)}
        cache = FeatureCache(cache_dir)
        for name, encoder in encoders.items():
            spec = encoder.input_spec
            if encoder.trainable:
                continue
            if calibration_rows is not None and encoder.calibrate_norms:  # from the training images
                calibrate_batchnorm(encoder, images_of(spec)[calibration_rows])
            self.features[name] = frozen_features(  # all cached: no image is converted
                encoder, cache, ids, lambda chunk, spec=spec: images_of(spec)[[rows[i] for i in chunk]],
                ds.digest(f"images:{spec.key}"))
        self.images = {e.input_spec.key: images_of(e.input_spec) for e in encoders.values() if e.trainable}

    def to(self, device: torch.device) -> "VisualInputs":
        """Move the preloaded images and features to ``device`` (in place)."""
        self.images = {key: x.to(device) for key, x in self.images.items()}
        self.features = {name: f.to(device) for name, f in self.features.items()}
        return self

    def batch(self, image_rows: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        images = {key: x[image_rows] for key, x in self.images.items()}
        features = {name: f[image_rows] for name, f in self.features.items()}
        return images, features
