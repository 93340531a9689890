"""ConVitX: tell AI-generated images from real photographs, and show where the model looked."""
from .config import LABELS, UNCERTAIN, ConVitXConfig
from .hub import (
    ModelLoadError,
    PushError,
    default_model_ref,
    load_checkpoint,
    push_to_hub,
    resolve_checkpoint,
    save_checkpoint,
)
from .images import (
    CannotJudgeError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
    UnsupportedImageError,
    load_image,
)
from .inference import Detector, Prediction
from .model import ConVitX, create_model
from .registry import get_config, list_models

__version__ = "0.1.0"

__all__ = [
    "LABELS",
    "UNCERTAIN",
    "CannotJudgeError",
    "ConVitX",
    "ConVitXConfig",
    "Detector",
    "EmptyImageError",
    "ImageError",
    "ImageTooLargeError",
    "ModelLoadError",
    "NotAnImageError",
    "Prediction",
    "PushError",
    "TruncatedImageError",
    "UnsupportedImageError",
    "create_model",
    "default_model_ref",
    "get_config",
    "list_models",
    "load_checkpoint",
    "load_image",
    "push_to_hub",
    "resolve_checkpoint",
    "save_checkpoint",
]
