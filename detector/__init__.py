"""ConVitX: tell AI-generated images from real photographs, and show where the model looked."""
from .config import LABELS, UNCERTAIN, BranchConfig, ConVitXConfig, DecisionRule, PreprocessConfig
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
    DecodedImage,
    decode,
    load_image,
)
from .evidence import Evidence, EvidenceKind
from .inference import Detector, Prediction
from .model import ConVitX, create_model
from .registry import get_config, list_models
from .report import Report, analyze, analyze_batch

__version__ = "0.1.0"

__all__ = [
    "LABELS",
    "UNCERTAIN",
    "BranchConfig",
    "CannotJudgeError",
    "ConVitX",
    "ConVitXConfig",
    "DecisionRule",
    "DecodedImage",
    "Detector",
    "EmptyImageError",
    "Evidence",
    "EvidenceKind",
    "ImageError",
    "ImageTooLargeError",
    "ModelLoadError",
    "NotAnImageError",
    "Prediction",
    "PreprocessConfig",
    "PushError",
    "Report",
    "TruncatedImageError",
    "UnsupportedImageError",
    "analyze",
    "analyze_batch",
    "create_model",
    "decode",
    "default_model_ref",
    "get_config",
    "list_models",
    "load_checkpoint",
    "load_image",
    "push_to_hub",
    "resolve_checkpoint",
    "save_checkpoint",
]
