"""Model registry: a dict of constructors filled by the ``register_model`` decorator.

Each model file registers its model class (or, for a composite model, a function that builds
it) under the name the configuration uses, so importing :mod:`models` registers every
architecture. Constructors take keyword-only, typed arguments with defaults; ``create_model``
checks the keyword names against the constructor's signature before calling it, so a key the
model does not know is a ``TypeError`` that names the key, the model and what it accepts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["create_model", "list_models", "model_defaults", "register_model", "unregister_model"]

_ModelFn = TypeVar("_ModelFn", bound=Callable[..., nn.Module])
_MODELS: dict[str, Callable[..., nn.Module]] = {}
_PASSED_TO: dict[Callable[..., nn.Module], type] = {}
"""Builder function -> the class its ``**keywords`` go to."""


def register_model(name: str, *, keywords_of: type | None = None) -> Callable[[_ModelFn], _ModelFn]:
    """Decorator registering a model class (or builder function) under ``name``; a second model
    with the same name is an error.

    A constructor's ``**keywords`` are those of the class it passes them on to: a class's base
    class, or ``keywords_of`` for a builder function (:func:`model_defaults`).
    """

    def register(constructor: _ModelFn) -> _ModelFn:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = constructor
        if keywords_of is not None:
            _PASSED_TO[constructor] = keywords_of
        return constructor

    return register


def unregister_model(name: str) -> None:
    """Forget the model ``name`` (a notebook defining it again, a test's own model)."""
    constructor = _MODELS.pop(name, None)
    _PASSED_TO.pop(constructor, None)  # type: ignore[arg-type]


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_MODELS)


def model_defaults(name: str) -> dict[str, Any]:
    """The keyword arguments ``name`` accepts, with their defaults.

    A caller holding a larger configuration (the training engine) can keep only these keys.
    """
    return _keywords(_lookup(name))


def _keywords(constructor: Callable[..., Any]) -> dict[str, Any]:
    params = inspect.signature(constructor).parameters.values()
    own = {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return own
    passed_to = _PASSED_TO.get(constructor)
    if passed_to is None and isinstance(constructor, type):
        passed_to = next(b for b in constructor.__mro__[1:] if "__init__" in vars(b))
    return {**(_keywords(passed_to) if passed_to is not None else {}), **own}


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs`` (see each constructor)."""
    accepted = model_defaults(name)
    for key in kwargs:
        if key not in accepted:
            known = ", ".join(sorted(accepted))
            raise TypeError(f"{name}: unexpected keyword argument {key!r} (accepted: {known})")
    return _lookup(name)(**kwargs)


def _lookup(name: str) -> Callable[..., nn.Module]:
    try:
        return _MODELS[name]
    except KeyError:
        known = ", ".join(list_models())
        raise ValueError(f"unknown model {name!r} (registered: {known})") from None
