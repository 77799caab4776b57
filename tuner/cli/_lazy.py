"""Modules the command handlers use, imported when a handler first reaches into them: building
``egotune``'s parser (``--help``, every command's start) then imports neither pandas nor the
results package."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["LazyModule"]


class LazyModule:
    """Stands for the module ``name`` and imports it at the first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)
