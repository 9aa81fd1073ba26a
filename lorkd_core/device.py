"""Device selection shared by the engine, the CLI and the app's worker."""

from __future__ import annotations

import torch


def select_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit choice that is unavailable raises."""
    pref = preference.lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        from lorkd_core.errors import ConfigError

        raise ConfigError("device 'cuda' was requested but no CUDA GPU is available")
    return torch.device(pref)
