"""Evaluation of a CLIP model: retrieval on image-caption pairs, zero-shot classification, k-shot linear probe."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from infra.errors import UserError
from pubmedclip.data import DataSummary, LabelledImage, tokenize_captions
from pubmedclip.encoder import ImageEncoder
from pubmedclip.finetune import evaluate_pairs, load_pairs
from pubmedclip.metrics import classification_metrics

DEFAULT_TEMPLATES = ("a {} image.", "a radiology image of the {}.", "a medical image showing the {}.")


def retrieval(
    encoder: ImageEncoder, spec: str, image_root: str | None = None, preset: str | None = None, batch_size: int = 64
) -> dict[str, Any]:
    """Image->text and text->image R@1/5/10 and median rank on a split of image-caption pairs."""
    summary = DataSummary()
    pairs = load_pairs(spec, image_root, summary, preset)
    tokens = tokenize_captions(encoder.loaded.tokenizer, [p.caption for p in pairs], summary)
    metrics = evaluate_pairs(
        encoder.loaded, pairs, tokens, batch_size, encoder.device, encoder.precision, encoder.num_workers
    )
    return {
        "task": "retrieval",
        "data": spec,
        "preset": preset,
        **metrics,
        "missing_images": summary.missing_images,
        "truncated_captions": summary.truncated_captions,
    }


def _usable(records: Sequence[LabelledImage], label: str) -> list[LabelledImage]:
    if records and label not in records[0].labels:
        raise UserError(f"no label '{label}' (available: {', '.join(records[0].labels)})")
    return [r for r in records if r.image.is_file() and r.labels.get(label)]


def _features(encoder: ImageEncoder, records: list[LabelledImage], label: str) -> tuple[np.ndarray, list[str]]:
    features, ok = encoder.encode_files([r.image for r in records])
    return features[ok], [r.labels[label] for r, good in zip(records, ok) if good]


@torch.no_grad()
def class_embeddings(encoder: ImageEncoder, classes: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """(C, D) unit text embeddings: each class's prompts embedded, normalised, averaged and normalised again."""
    model, tokenizer = encoder.model, encoder.loaded.tokenizer
    rows = []
    for name in classes:
        prompts = [t.format(name.replace("_", " ")) for t in templates]
        emb = F.normalize(model.encode_text(tokenizer(prompts).to(encoder.device)).float(), dim=-1)  # [T, D]
        rows.append(F.normalize(emb.mean(dim=0), dim=-1).cpu())
    return torch.stack(rows)


def zero_shot(
    encoder: ImageEncoder, records: Sequence[LabelledImage], label: str, templates: Sequence[str] = DEFAULT_TEMPLATES
) -> dict[str, Any]:
    """Zero-shot classification of ``label`` with prompt templates (``{}`` = class name)."""
    usable = _usable(records, label)
    features, truth = _features(encoder, usable, label)
    if not truth:
        raise UserError(f"no decodable image carries label '{label}'")
    classes = sorted(set(truth))
    text = class_embeddings(encoder, classes, templates)  # [C, D]
    scores = F.normalize(torch.from_numpy(features), dim=-1) @ text.T  # [N, C]
    predicted = [classes[i] for i in scores.argmax(dim=1).tolist()]
    return {
        "task": "zero-shot",
        "label": label,
        "classes": classes,
        "templates": list(templates),
        **classification_metrics(truth, predicted),
        "skipped_images": len(usable) - len(truth),
    }


def linear_probe(
    encoder: ImageEncoder,
    train: Sequence[LabelledImage],
    test: Sequence[LabelledImage],
    label: str,
    k_shots: Sequence[int | None] = (None,),
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Logistic regression on frozen embeddings, with all or ``k`` training images per class (several draws)."""
    train_x, train_y = _features(encoder, _usable(train, label), label)
    test_x, test_y = _features(encoder, _usable(test, label), label)
    if not train_y or not test_y:
        raise UserError(f"linear probe on '{label}' needs decodable train and test images")
    train_y_arr = np.asarray(train_y)
    results = {}
    for k in k_shots:
        draws = []
        for repeat in range(repeats if k else 1):
            rng = np.random.default_rng(seed + repeat)
            if k:
                chosen = np.concatenate(
                    [rng.permutation(np.flatnonzero(train_y_arr == c))[:k] for c in np.unique(train_y_arr)]
                )
            else:
                chosen = np.arange(len(train_y_arr))
            if len(np.unique(train_y_arr[chosen])) < 2:
                raise UserError(f"linear probe on '{label}' needs at least two classes in the training images")
            probe = LogisticRegression(max_iter=2000).fit(train_x[chosen], train_y_arr[chosen])
            draws.append(classification_metrics(test_y, probe.predict(test_x).tolist()))
        results["all" if not k else f"{k}-shot"] = {
            key: float(np.mean([d[key] for d in draws])) for key in draws[0]
        } | {"draws": len(draws)}
    return {"task": "linear-probe", "label": label, "n_train": len(train_y), "n_test": len(test_y), "results": results}
