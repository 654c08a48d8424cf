"""Front doors that import on first use: a package lists its names and the modules that define them,
and pays for a module's imports (torch, Kafka clients, faust) only when one of its names is used.

>>> import types
>>> getattr_, dir_ = lazy_exports("json", {"dumps": "json"})
>>> getattr_("dumps")({"a": 1})
'{"a": 1}'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``'s ``__init__``: ``exports`` maps each name to the module
    that defines it, absolute (``hfrisk.stack.kafka``) or relative to the package (``kafka``). A name is
    imported on first use and then kept in the package, so the lookup runs once."""

    def module_of(name: str) -> str:
        module = exports[name]
        return module if module.startswith("hfrisk.") or "." not in package else f"{package}.{module}"

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_of(name)), name)
        if package in sys.modules:
            setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        namespace = vars(sys.modules[package]) if package in sys.modules else {}
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
