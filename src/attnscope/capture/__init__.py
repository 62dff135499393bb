"""Model -> Trace: loading models and recording their attention in one forward pass."""

from .hf import capture, capture_batch
from .models import DEFAULT_MODEL, OFFLINE_MODELS, load_model

__all__ = ["DEFAULT_MODEL", "OFFLINE_MODELS", "capture", "capture_batch", "load_model"]
