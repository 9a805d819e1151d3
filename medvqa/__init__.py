"""Medical visual question answering: datasets, vocabularies, MEVF and QCR+TCR models, evaluation."""

__version__ = "0.1.0"
