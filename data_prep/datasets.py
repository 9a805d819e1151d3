"""The datasets ``medvqa prepare`` knows: the built-in ones, and any a plug-in module registers.

A dataset is one reader module registered with ``@register_dataset(name, Options, ...)`` (see
``data_prep.source``); its options dataclass gives ``medvqa prepare NAME`` its own flags. Importing
this module registers the built-in datasets.
"""
from __future__ import annotations

from data_prep import slake, synthetic, vqa_rad  # noqa: F401  (each registers itself when imported)
from data_prep.source import DATASETS, FACTS, DatasetFacts, option, register_dataset, registered_name

__all__ = ["DATASETS", "DatasetFacts", "facts", "option", "published_answer_vocab", "register_dataset",
           "registered_name"]


def facts(name: str) -> DatasetFacts:
    """What the registration of dataset ``name`` says about it; an unknown name is a UserError."""
    DATASETS.entry(name)
    return FACTS[name]


def published_answer_vocab(prepared_name: str) -> str | None:
    """The answer vocabulary the published runs on this prepared dataset used (``train``,
    ``train+test``), or None where there are none or the dataset is not registered."""
    name = registered_name(prepared_name)
    return None if name is None else FACTS[name].published_answer_vocab
