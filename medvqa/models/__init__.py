"""VQA models: shared blocks, visual encoders (registered by name) and heads built by ``create_model``."""
from medvqa.models import cdae, clip, maml, mevf, qcr, type_classifier  # noqa: F401  (fill the registries)
from medvqa.models.head import VQAHead, VQAOutput
from medvqa.models.registry import create_model, list_models, register_model
from medvqa.models.visual import (
    FeatureCache,
    InputSpec,
    VisualEncoder,
    create_encoder,
    list_encoders,
    register_encoder,
)

__all__ = [
    "FeatureCache", "InputSpec", "VQAHead", "VQAOutput", "VisualEncoder", "create_encoder", "create_model",
    "list_encoders", "list_models", "register_encoder", "register_model",
]
