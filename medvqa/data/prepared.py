"""Read a directory written by ``medvqa prepare``: records, vocabularies, embeddings, image caches.

Layout::

    summary.json        counts, vocabulary sizes, unanswerable test QA, provenance
    records.jsonl       one VQARecord per line, file order of the source, split train/val/test
    dictionary.json     question words and the unknown-word policy
    answers.json        the default answer vocabulary (all / closed / open)
    embeddings.npz      glove, tfidf_published, tfidf_corrected: [n_words, 300] float32
    images/manifest.json, images/<spec>.npy   uint8 caches, one row per image
    weights/            the MEVF encoder weights the source carried (or --encoder-weights), if any
"""
from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path

import numpy as np

from data_prep.datasets import DATASETS
from data_prep.records import SPLITS, VQARecord
from data_prep.text import ANSWER_SOURCES, AnswerVocab, Dictionary
from infra.errors import UserError

REQUIRED_FILES = ("summary.json", "records.jsonl", "dictionary.json", "answers.json", "embeddings.npz",
                  "images/manifest.json")


class PreparedDataset:
    """A prepared dataset directory; everything downstream reads data through this class."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        missing = [name for name in REQUIRED_FILES if not (self.root / name).is_file()]
        if missing:
            raise UserError(f"{self.root} is not a prepared dataset (missing {missing[0]}); "
                            f"create it with: medvqa prepare {{{','.join(DATASETS.names())}}} --out {self.root}")
        self.summary = json.loads((self.root / "summary.json").read_text())
        self.name: str = self.summary["dataset"]
        self._manifest = json.loads((self.root / "images" / "manifest.json").read_text())
        self._image_rows = {image_id: row for row, image_id in enumerate(self._manifest["images"])}
        self._digests: dict[str, str] = {}

    def digest(self, part: str) -> str:
        """A short hash of one part of the data a model learns from: ``records``, ``dictionary``,
        ``embeddings`` or ``images:<spec>`` (e.g. ``images:gray84``).

        Provenance (source path, preparation date) is in no part, so the same data prepared again or
        moved elsewhere keeps its digests; another split, vocabulary or resize filter does not. Nor are
        the encoder weights (``encoder_weights``): an encoder identifies the weights it loads itself.
        """
        if part not in self._digests:
            digest = hashlib.sha256()
            if part in ("records", "dictionary"):
                digest.update((self.root / f"{part}.jsonl" if part == "records" else self.root / f"{part}.json")
                              .read_bytes())
            elif part == "embeddings":
                with np.load(self.root / "embeddings.npz") as archive:  # by array: zip entries carry timestamps
                    for key in sorted(archive.files):
                        digest.update(key.encode())
                        digest.update(memoryview(np.ascontiguousarray(archive[key])).cast("B"))
            elif part.startswith("images:"):
                digest.update(json.dumps(self._manifest["images"]).encode())
                digest.update(memoryview(np.ascontiguousarray(self.images(part.removeprefix("images:")))).cast("B"))
            else:
                raise UserError(f"unknown data part {part!r}: records, dictionary, embeddings or images:<spec>")
            self._digests[part] = digest.hexdigest()[:16]
        return self._digests[part]

    def encoder_weights(self, name: str) -> Path | None:
        """The absolute path of visual encoder ``name``'s (``maml``, ``cdae``) weights carried in this
        directory, or None where ``medvqa prepare`` found none."""
        relative = self.summary.get("encoder_weights", {}).get(name)
        if relative is None:
            return None
        path = (self.root / relative).absolute()
        if not path.is_file():
            raise UserError(f"{self.root}: summary.json names {relative} for encoder {name!r}, but it is missing")
        return path

    @cached_property
    def all_records(self) -> list[VQARecord]:
        with (self.root / "records.jsonl").open(encoding="utf8") as handle:
            return [VQARecord.from_dict(json.loads(line)) for line in handle]

    def records(self, split: str) -> list[VQARecord]:
        """Records of ``split`` (train / val / test) in source order."""
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}: choose from {', '.join(SPLITS)}")
        return [r for r in self.all_records if r.split == split]

    @property
    def official_train_splits(self) -> tuple[str, ...]:
        """Splits that make up the dataset's official training file (VQA-RAD holds val out of it)."""
        return ("train", "val") if self.summary["val_held_out_of_train"] else ("train",)

    @cached_property
    def dictionary(self) -> Dictionary:
        return Dictionary.from_dict(json.loads((self.root / "dictionary.json").read_text()))

    def dictionary_with(self, unknown: str) -> Dictionary:
        """The same words under another unknown-word policy (``token`` or ``last-word``)."""
        return Dictionary(self.dictionary.vocabulary, unknown=unknown)

    @cached_property
    def answers(self) -> AnswerVocab:
        return AnswerVocab.from_dict(json.loads((self.root / "answers.json").read_text()))

    def answer_vocab(self, source: str = "train", closed_by: str = "answer_type") -> AnswerVocab:
        """An answer vocabulary built from ``train``, ``train+val`` or ``train+test`` records."""
        if source not in ANSWER_SOURCES:
            raise UserError(f"unknown answer source {source!r}: choose from {', '.join(ANSWER_SOURCES)}")
        splits = set(self.official_train_splits) | {s for s in source.split("+")[1:]}
        chosen = [r for r in self.all_records if r.split in splits]
        return AnswerVocab.build(chosen, source=source, closed_by=closed_by)

    def word_embeddings(self, tfidf: str = "published",
                        dictionary: Dictionary | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(glove, tfidf_glove)``, each ``[dictionary.ntoken, 300]`` float32 (zero row for ``<unk>``)."""
        dictionary = dictionary or self.dictionary
        with np.load(self.root / "embeddings.npz") as archive:
            key = f"tfidf_{tfidf}"
            if key not in archive.files:
                raise UserError(f"unknown tf-idf weighting {tfidf!r}: choose 'published' or 'corrected'")
            glove, tfidf_glove = archive["glove"], archive[key]
        extra = dictionary.ntoken - glove.shape[0]
        pad = ((0, extra), (0, 0))
        return np.pad(glove, pad), np.pad(tfidf_glove, pad)

    @property
    def image_specs(self) -> list[str]:
        return list(self._manifest["specs"])

    def images(self, spec: str) -> np.ndarray:
        """The uint8 cache of ``spec`` (``gray84``, ``gray128``, ``rgb224``, ... any ``gray<N>`` or ``rgb<N>``), memory-mapped."""
        if spec not in self._manifest["specs"]:
            raise UserError(f"{self.root}: no image cache {spec!r} (prepared: {', '.join(self.image_specs)}); "
                            f"re-run medvqa prepare with --image-specs including it")
        return np.load(self.root / "images" / self._manifest["specs"][spec]["file"], mmap_mode="r")

    @property
    def image_ids(self) -> list[str]:
        return list(self._manifest["images"])

    def image_row(self, image_id: str) -> int:
        try:
            return self._image_rows[image_id]
        except KeyError:
            raise UserError(f"{self.root}: image {image_id!r} is not in the image cache") from None
