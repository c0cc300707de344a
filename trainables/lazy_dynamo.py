"""``torch._dynamo`` imported when something compiles, not on an optimizer's first use.

Every ``torch.optim.Optimizer`` imports ``torch._dynamo`` (1.4-2 s of CPU here) whether or not anything
is compiled: its constructor calls ``add_param_group``, which ``torch._disable_dynamo`` wraps, and each
``step`` calls ``torch._dynamo.graph_break()``. In an eager trial both are no-ops: nothing is being
compiled, so there is nothing to break or to disable.

:func:`install` puts a stand-in in ``sys.modules["torch._dynamo"]`` that answers those two calls
without the import:

* ``graph_break()`` does nothing until the real module is loaded, then calls it;
* ``disable(fn, recursive, wrapping=False)`` (what ``torch._disable_dynamo`` asks for) returns a function
  that calls ``fn`` directly until the real module is loaded, and from then on the real
  ``torch._dynamo.disable(fn, ...)``. So a process that compiles later (``compile: true``, or a user's
  ``torch.compile``) gets the optimizer's methods disabled for Dynamo exactly as without the stand-in.

Anything else asked of it (``torch.compile``, ``torch.compiler.reset()``, ``from torch._dynamo.utils
import ...``) imports the real module, which then replaces the stand-in for good.

Installed in processes hpsearch owns (trial workers, ``hpsearch retrain``), not on import of the package;
``HPSEARCH_LAZY_DYNAMO=0`` in the environment leaves ``torch._dynamo`` alone.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

NAME = "torch._dynamo"
ENV = "HPSEARCH_LAZY_DYNAMO"
_lock = threading.RLock()


class _StandIn(types.ModuleType):
    """``torch._dynamo`` before anything needs it; every other attribute imports the real module."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(real(), attr)


def loaded() -> types.ModuleType | None:
    """The real ``torch._dynamo`` if it has been imported, else ``None``."""
    module = sys.modules.get(NAME)
    return None if module is None or isinstance(module, _StandIn) else module


def real() -> types.ModuleType:
    """The real ``torch._dynamo``, imported now if it was not (and set as ``torch._dynamo``)."""
    with _lock:
        module = loaded()
        if module is not None:
            return module
        stand_in = sys.modules.pop(NAME, None)
        import torch

        try:
            module = importlib.import_module(NAME)
        except BaseException:
            if stand_in is not None:
                sys.modules[NAME] = stand_in
            raise
        torch._dynamo = module
        return module


def graph_break(msg: str = "") -> None:
    module = loaded()
    if module is not None:
        module.graph_break(msg)


def disable(
    fn: Callable[..., Any] | None = None, recursive: bool = True, *, reason: str | None = None, wrapping: bool = True
) -> Any:
    if fn is None or reason is not None or wrapping:  # not what torch's own lazy wrapper asks for
        return real().disable(fn, recursive, reason=reason, wrapping=wrapping)
    target: list[Callable[..., Any]] = []

    def call(*args: Any, **kwargs: Any) -> Any:
        module = loaded()
        if module is None:
            return fn(*args, **kwargs)
        if not target:
            target.append(module.disable(fn, recursive, wrapping=False))
        return target[0](*args, **kwargs)

    call.__wrapped__ = fn  # type: ignore[attr-defined]
    call.hpsearch_target = target  # type: ignore[attr-defined]  # what it calls once Dynamo is loaded (tests)
    return call


def install() -> bool:
    """Put the stand-in in place, unless ``torch._dynamo`` is already imported or ``HPSEARCH_LAZY_DYNAMO``
    is ``0``; whether it is in place."""
    import torch

    if os.environ.get(ENV, "1").strip().lower() in ("0", "off", "false", "no"):
        return False
    with _lock:
        if NAME in sys.modules:
            return isinstance(sys.modules[NAME], _StandIn)
        stand_in = _StandIn(NAME, __doc__)
        stand_in.graph_break = graph_break  # type: ignore[attr-defined]
        stand_in.disable = disable  # type: ignore[attr-defined]
        sys.modules[NAME] = stand_in
        torch._dynamo = stand_in
        return True


__all__ = ["ENV", "NAME", "disable", "graph_break", "install", "loaded", "real"]
