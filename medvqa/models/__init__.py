"""VQA models: shared blocks, visual encoders and VQA heads, each registered by name with its own settings."""
from medvqa.models import cdae, clip, maml, mevf, qcr  # noqa: F401  (fill the registries)
from medvqa.models.head import VQAHead, VQAOutput
from medvqa.models.registry import HEADS, create_head, list_heads, register_head
from medvqa.models.type_classifier import QuestionTypeClassifier
from medvqa.models.visual import (
    ENCODERS,
    FeatureCache,
    InputSpec,
    VisualEncoder,
    create_encoder,
    list_encoders,
    register_encoder,
)

__all__ = [
    "ENCODERS", "FeatureCache", "HEADS", "InputSpec", "QuestionTypeClassifier", "VQAHead", "VQAOutput",
    "VisualEncoder", "create_encoder", "create_head", "list_encoders", "list_heads", "register_encoder",
    "register_head",
]
