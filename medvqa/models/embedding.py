"""Word embedding: GloVe-initialised 300-d table, optionally concatenated with the tf-idf table (600-d)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

EMBED_DIM = 300


class WordEmbedding(nn.Module):
    """Token ids ``[B, T]`` -> vectors ``[B, T, 300]`` (or ``[B, T, 600]`` with ``tfidf=True``).

    Both tables have ``ntoken + 1`` rows; row ``ntoken`` is the padding row (zero, no gradient).
    """

    def __init__(self, ntoken: int, tfidf: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.ntoken = ntoken
        self.emb = nn.Embedding(ntoken + 1, EMBED_DIM, padding_idx=ntoken)
        self.emb_tfidf = nn.Embedding(ntoken + 1, EMBED_DIM, padding_idx=ntoken) if tfidf else None
        self.dropout = nn.Dropout(dropout)

    @property
    def output_dim(self) -> int:
        return EMBED_DIM * (2 if self.emb_tfidf is not None else 1)

    def init_weights(self, glove: np.ndarray, tfidf_glove: np.ndarray | None = None) -> None:
        """Copy ``[ntoken, 300]`` initial rows into the table(s); the padding row stays zero."""
        tables = [(self.emb, glove)]
        if self.emb_tfidf is not None:
            if tfidf_glove is None:
                raise ValueError("tfidf=True needs the tf-idf weighted GloVe rows")
            tables.append((self.emb_tfidf, tfidf_glove))
        with torch.no_grad():
            for table, rows in tables:
                if rows.shape != (self.ntoken, EMBED_DIM):
                    raise ValueError(f"embedding init has shape {rows.shape}, expected {(self.ntoken, EMBED_DIM)}")
                table.weight[: self.ntoken] = torch.from_numpy(np.asarray(rows, dtype=np.float32))

    def forward(self, tokens: Tensor) -> Tensor:
        emb = self.emb(tokens)  # [B, T, 300]
        if self.emb_tfidf is not None:
            emb = torch.cat([emb, self.emb_tfidf(tokens)], dim=2)  # [B, T, 600]
        return self.dropout(emb)
