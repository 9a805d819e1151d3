"""A fusion-MLP VQA head: the projected image vector times the question's last GRU state, then an MLP."""
from dataclasses import dataclass

from torch import nn

from medvqa.models import VQAHead, VQAOutput, register_head
from medvqa.models.embedding import WordEmbedding
from medvqa.models.head import answer_bce


@dataclass
class FusionMLPSettings:
    hidden_dim: int = 256
    dropout: float = 0.2


class FusionMLP(VQAHead):
    def __init__(self, settings, ntoken, answer_sizes, visual):
        super().__init__(answer_sizes, visual)
        self.w_emb = WordEmbedding(ntoken)
        self.rnn = nn.GRU(self.w_emb.output_dim, settings.hidden_dim, batch_first=True)
        self.v_proj = nn.Linear(visual.output_dim, settings.hidden_dim)
        self.mlp = nn.Sequential(nn.ReLU(), nn.Dropout(settings.dropout), nn.Linear(settings.hidden_dim, self.num_answers))

    def init_word_embeddings(self, glove, tfidf_glove):
        self.w_emb.init_weights(glove)

    def forward(self, tokens, images=None, features=None, is_open=None):
        visual = self.visual(images, features)  # v: [B, 1, v_dim]
        states, _ = self.rnn(self.w_emb(tokens))  # [B, 12, hidden]
        return VQAOutput(self.mlp(self.v_proj(visual.v[:, 0]) * states[:, -1]), visual.aux_loss)

    def loss(self, output, targets, is_open=None):
        loss = answer_bce(output.logits.float(), targets, "instance")
        return loss if output.aux_loss is None else loss + output.aux_loss


@register_head("fusion_mlp", settings=FusionMLPSettings)
def fusion_mlp(settings, **context):
    return FusionMLP(settings, **context)
