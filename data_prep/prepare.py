"""Build a prepared dataset directory from a raw dataset, atomically (temporary directory + rename)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_prep import synthetic
from data_prep.datasets import DATASETS, facts
from data_prep.embeddings import glove_init, load_glove, tfidf_glove_init, tfidf_matrix
from data_prep.images import DEFAULT_IMAGE_SPECS, build_image_caches, parse_specs
from data_prep.legacy import write_legacy_files
from data_prep.records import ANSWER_TYPES, SPLITS, VQARecord
from data_prep.source import RawDataset
from data_prep.text import ANSWER_SOURCES, AnswerVocab, Dictionary
from infra.errors import UserError
from infra.files import link_atomic

# visual encoder -> the file of its published MEVF weights
ENCODER_WEIGHTS = {"maml": "pretrained_maml.weights", "cdae": "pretrained_ae.pth"}
WEIGHTS_DIR = "weights"


@dataclass
class PrepareOptions:
    """Everything ``medvqa prepare`` can set for any dataset; defaults are the sound choices.

    ``dataset_options``: the dataset's own options, an instance of its registered options dataclass or a
    mapping of its fields (None: its defaults). ``encoder_weights``: a folder holding the MEVF weight
    files (``ENCODER_WEIGHTS``) to carry; without it, the folder the dataset was read from is looked in.
    """

    source: Path | None = None
    glove: Path | None = None
    answers_from: str = "train"
    unknown: str = "token"  # or "last-word" (published)
    image_specs: list[str] = field(default_factory=lambda: list(DEFAULT_IMAGE_SPECS))
    square_filter: str = "bicubic"
    val_fraction: float = 0.1
    val_seed: int = 0
    legacy_files: bool = False
    overwrite: bool = False
    encoder_weights: Path | None = None
    dataset_options: Mapping[str, Any] | Any | None = None


def dataset_settings(dataset: str, values: Mapping[str, Any] | Any | None) -> Any:
    """``values`` (an instance of the dataset's options dataclass, a mapping of its fields, or None for
    the defaults) as an instance of that dataclass."""
    kind = DATASETS.entry(dataset).settings
    if isinstance(values, kind):
        return values
    if dataclasses.is_dataclass(values):
        raise UserError(f"dataset {dataset!r} takes {kind.__name__}, got {type(values).__name__}")
    return DATASETS.settings(dataset, values, where=f"options of dataset {dataset!r}")


def read_dataset(dataset: str, settings: Any, source: Path | None) -> RawDataset:
    """The registered reader of ``dataset`` run on ``source`` with ``settings`` (see ``dataset_settings``)."""
    raw = DATASETS.create(dataset, settings, source=source)
    expected = facts(dataset).prepared_name
    if raw.name != expected:
        raise UserError(f"dataset {dataset!r}: its reader names the data {raw.name!r}, registered as {expected!r}")
    return raw


def encoder_weight_files(options: PrepareOptions, raw: RawDataset) -> dict[str, Path]:
    """The MEVF weight files present in ``options.encoder_weights``, else in the folder the dataset was read from."""
    if options.encoder_weights is not None:
        folder = options.encoder_weights
        if not folder.is_dir():
            raise UserError(f"--encoder-weights {folder}: folder not found")
    elif options.source is not None:
        folder = Path(raw.source)
    else:
        return {}
    found = {name: folder / file for name, file in ENCODER_WEIGHTS.items() if (folder / file).is_file()}
    if options.encoder_weights is not None and not found:
        raise UserError(f"--encoder-weights {folder}: holds none of {', '.join(ENCODER_WEIGHTS.values())}")
    return found


def hold_out_validation(records: list[VQARecord], fraction: float, seed: int) -> list[VQARecord]:
    """Mark a fixed part of train as ``val``: per answer type, the ``fraction`` of questions whose
    ``sha256(seed:qid)`` sorts first. Independent of library versions and of record order."""
    if not 0 < fraction < 1:
        raise UserError(f"validation fraction {fraction} must be between 0 and 1")
    chosen: set[str] = set()
    for answer_type in ANSWER_TYPES:
        qids = [r.qid for r in records if r.split == "train" and r.answer_type == answer_type]
        qids.sort(key=lambda q: hashlib.sha256(f"{seed}:{q}".encode()).hexdigest())
        chosen.update(qids[: round(fraction * len(qids))])
    return [dataclasses.replace(r, split="val") if r.qid in chosen and r.split == "train" else r for r in records]


def _counts(records: list[VQARecord]) -> dict[str, int]:
    by_type = Counter(r.answer_type for r in records)
    return {"total": len(records), **{t: by_type[t] for t in ANSWER_TYPES}}


def _unanswerable(test: list[VQARecord], vocab: AnswerVocab) -> dict[str, int]:
    return _counts([r for r in test if vocab.label(r.answer) is None])


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise UserError(f"output directory {out} already exists; pass --overwrite to replace it")
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create output directory {parent}: {error.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise UserError(f"output directory {parent} is not writable")


def _publish(staging: Path, out: Path) -> None:
    """Move the finished directory into place; an existing one is replaced only after that succeeds."""
    if not out.exists():
        os.replace(staging, out)
        return
    retired = staging.with_name(staging.name.replace(".partial-", ".replaced-"))
    os.replace(out, retired)
    os.replace(staging, out)
    shutil.rmtree(retired)


def prepare(dataset: str, out: Path, options: PrepareOptions) -> dict:
    """Read ``dataset``, build vocabularies, embeddings and image caches, write ``out``; return the summary."""
    settings = dataset_settings(dataset, options.dataset_options)
    if options.answers_from not in ANSWER_SOURCES:
        raise UserError(f"unknown answer source {options.answers_from!r}: choose from {', '.join(ANSWER_SOURCES)}")
    specs = parse_specs(options.image_specs)
    _check_output(out, options.overwrite)
    started = time.perf_counter()

    raw = read_dataset(dataset, settings, options.source)
    weights = encoder_weight_files(options, raw)
    records = raw.records
    val_held_out = not any(r.split == "val" for r in records)
    if val_held_out:
        records = hold_out_validation(records, options.val_fraction, options.val_seed)
    for split in SPLITS:
        if not any(r.split == split for r in records):
            raise UserError(f"{raw.source or dataset}: split '{split}' is empty")
    official_train = [r for r in records if r.split in (("train", "val") if val_held_out else ("train",))]
    test = [r for r in records if r.split == "test"]

    train_questions = [r.question for r in official_train]
    dictionary = Dictionary.build(train_questions, unknown=options.unknown)
    words = dictionary.vocabulary
    glove_table = load_glove(options.glove) if options.glove else {}
    glove = glove_init(words, glove_table)
    last_word = Dictionary(words, unknown="last-word")
    tfidf = {w: tfidf_glove_init(tfidf_matrix(train_questions, last_word, w), glove) for w in ("published", "corrected")}

    splits_for = {"train": official_train, "train+val": [r for r in records if r.split in ("train", "val")],
                  "train+test": official_train + test}
    vocabularies = {s: AnswerVocab.build(splits_for[s], source=s) for s in ANSWER_SOURCES}
    image_ids = sorted({r.image_id for r in records})
    if raw.image_order is not None:
        missing = set(image_ids) - set(raw.image_order)
        if missing:
            raise UserError(f"{raw.source}: image index lacks {len(missing)} image(s), e.g. {sorted(missing)[0]}")
        image_ids = list(raw.image_order)

    out = Path(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.resolve().parent))
    try:
        manifest = build_image_caches(image_ids, raw.open_image, specs, staging / "images", options.square_filter)
        (staging / "images" / "manifest.json").write_text(json.dumps(manifest, indent=1))
        with (staging / "records.jsonl").open("w", encoding="utf8") as handle:
            for record in records:
                handle.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        (staging / "dictionary.json").write_text(json.dumps(dictionary.to_dict(), ensure_ascii=False))
        (staging / "answers.json").write_text(json.dumps(vocabularies[options.answers_from].to_dict(), ensure_ascii=False))
        np.savez(staging / "embeddings.npz", glove=glove, tfidf_published=tfidf["published"],
                 tfidf_corrected=tfidf["corrected"])
        (staging / "splits.json").write_text(json.dumps({
            "val_held_out_of_train": val_held_out, "val_fraction": options.val_fraction if val_held_out else None,
            "val_seed": options.val_seed if val_held_out else None, "stratified_by": "answer_type",
            "val_qids": [r.qid for r in records if r.split == "val"]}))
        if raw.captions is not None:
            synthetic.write_caption_set(raw, image_ids, staging / "captions")
        if options.legacy_files:
            write_legacy_files(staging / "legacy", words, glove, official_train, test, image_ids)
        if weights:
            (staging / WEIGHTS_DIR).mkdir()
            for file in weights.values():
                link_atomic(file, staging / WEIGHTS_DIR / file.name)
        summary = {
            "dataset": raw.name, "source": raw.source, "language": getattr(settings, "language", None),
            "val_held_out_of_train": val_held_out,
            "counts": {split: _counts([r for r in records if r.split == split]) for split in SPLITS},
            "images": len(image_ids), "image_specs": [s.key for s in specs], "square_filter": options.square_filter,
            "dictionary": {"words": len(words), "ntoken": dictionary.ntoken, "unknown": options.unknown,
                           "test_questions_with_unknown_words": sum(dictionary.count_unknown(r.question) > 0 for r in test)},
            "glove": {"file": str(options.glove) if options.glove else None,
                      "words_covered": int(np.count_nonzero(np.abs(glove).sum(1)))},
            "answers": {"source": options.answers_from, **{b: len(getattr(vocabularies[options.answers_from], b))
                                                         for b in ("all", "closed", "open")}},
            "unanswerable_test": {s: _unanswerable(test, v) for s, v in vocabularies.items()},
            "legacy_files": options.legacy_files,
            "encoder_weights": {name: f"{WEIGHTS_DIR}/{file.name}" for name, file in weights.items()},
        }
        summary["seconds"] = round(time.perf_counter() - started, 2)
        summary["disk_bytes"] = _disk_bytes(staging)
        (staging / "summary.json").write_text(json.dumps(summary, indent=2))
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary
