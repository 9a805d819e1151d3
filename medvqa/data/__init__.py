"""Records, vocabularies, embeddings and prepared datasets."""
from data_prep.records import VQARecord
from data_prep.text import AnswerVocab, Dictionary, normalize_answer, tokenize
from medvqa.data.prepared import PreparedDataset

__all__ = ["AnswerVocab", "Dictionary", "PreparedDataset", "VQARecord", "normalize_answer", "tokenize"]
