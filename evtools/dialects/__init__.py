"""Dialects: models of real JSON consumers, one module each, the same verbs in each.

``get_dialect("go")`` returns a ready instance; ``DIALECTS`` lists the names. Modules are
imported on first use so that ``import evtools`` never imports pandas, polars or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import MissingDependency, UsageError
from ._base import Dialect

__all__ = ["DIALECTS", "Dialect", "get_dialect"]

#: name -> (module, class). Order is the order reports list them.
_REGISTRY: dict[str, tuple[str, str]] = {
    "python": ("python", "PythonDialect"),
    "go": ("go", "GoDialect"),
    "js": ("js", "JsDialect"),
    "pandas": ("pandas", "PandasDialect"),
    "polars": ("polars", "PolarsDialect"),
    "torch": ("torch", "TorchDialect"),
}
DIALECTS: tuple[str, ...] = tuple(_REGISTRY)


def get_dialect(name: str, **options: Any) -> Dialect:
    """An instance of the dialect called ``name`` (``go``, ``js``, ``pandas``...)."""
    try:
        module_name, class_name = _REGISTRY[name]
    except KeyError:
        raise UsageError(
            f"unknown dialect {name!r}; choose from {', '.join(DIALECTS)}"
        ) from None
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ModuleNotFoundError as e:  # pandas, polars or torch is not installed
        missing = (e.name or module_name).split(".")[0]
        raise MissingDependency(missing, "torch" if missing == "torch" else "all") from e
    cls: type[Dialect] = getattr(module, class_name)
    return cls(**options)
