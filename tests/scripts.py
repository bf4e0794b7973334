"""Load a file of ``scripts/`` as a module, for the tests of the repository's scripts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str, module_name: str | None = None) -> ModuleType:
    """Import ``scripts/<name>.py`` as the module ``module_name`` (default ``name``), registered in ``sys.modules``
    (dataclasses look their module up there)."""  # noqa: D205
    module_name = module_name or name
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
