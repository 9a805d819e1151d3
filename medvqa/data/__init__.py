"""Records, vocabularies, embeddings and prepared datasets."""
from medvqa.data.prepared import PreparedDataset
from medvqa.data.records import VQARecord
from medvqa.data.text import AnswerVocab, Dictionary, normalize_answer, tokenize

__all__ = ["AnswerVocab", "Dictionary", "PreparedDataset", "VQARecord", "normalize_answer", "tokenize"]
