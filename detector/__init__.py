"""ConVitX: tell AI-generated images from real photographs, and show where the model looked."""
import importlib as _importlib
import importlib.abc as _importlib_abc
import importlib.util as _importlib_util
import sys as _sys
import warnings as _warnings

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


class _RegisterWithTransformers(_importlib_abc.MetaPathFinder):
    """Registers ConVitX with transformers' Auto classes right after transformers is imported.

    transformers is optional and adds ~2 s to an import: the CLI and the app should not pay for it,
    yet ``pipeline("image-classification", model=<ConVitX>)`` must work after ``import detector``
    whichever of the two is imported first (see ``detector/transformers_interop.py``).
    """

    def __init__(self) -> None:
        self._finding = False

    def find_spec(self, name, path=None, target=None):
        if name != "transformers" or self._finding:
            return None
        self._finding = True
        try:
            spec = _importlib_util.find_spec(name)  # the finders after this one
        finally:
            self._finding = False
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return None
        exec_module = spec.loader.exec_module

        def exec_then_register(module) -> None:
            exec_module(module)
            _register_with_transformers()

        spec.loader.exec_module = exec_then_register
        return spec


def _register_with_transformers() -> None:
    _sys.meta_path[:] = [f for f in _sys.meta_path if not isinstance(f, _RegisterWithTransformers)]
    try:
        # registers on import; already importing (it imports transformers, which runs this hook)? it finishes itself
        _importlib.import_module(f"{__name__}.transformers_interop")
    except Exception as exc:  # an incompatible transformers must not break importing it
        _warnings.warn(f"ConVitX could not register with transformers: {type(exc).__name__}: {exc}", stacklevel=2)


if "transformers" in _sys.modules:
    _register_with_transformers()
elif _importlib_util.find_spec("transformers") is not None:
    _sys.meta_path.insert(0, _RegisterWithTransformers())
