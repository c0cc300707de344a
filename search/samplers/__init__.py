"""Samplers: what proposes each trial's config (``search.sampler``). One module per sampler, each a spec
model registered here (:class:`hpsearch.registry.Registry`); ``tpe`` is the default.

A sampler is a :class:`SamplerSpec` subclass: its fields are the spec's ``search.sampler`` keys and
:meth:`SamplerSpec.build` returns the Optuna sampler. Add one with :func:`register` (in a module the job
spec names under ``plugins``, so that ``hpsearch run`` imports it before it reads the spec).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hpsearch.registry import Registry, Strict

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler


class SamplerSpec(Strict):
    """The settings every sampler has.

    Args:
        type: the sampler's registered name.
        seed: makes the search reproducible: the sampler's seed, and each trial's.
    """

    type: str
    seed: int = 0

    def build(self) -> BaseSampler:
        """The Optuna sampler these settings describe (a new one: the search owns it)."""
        raise NotImplementedError(f"{type(self).__qualname__} does not build a sampler")


REGISTRY: Registry[SamplerSpec] = Registry("sampler", SamplerSpec)
register = REGISTRY.register
DEFAULT = "tpe"


def default() -> SamplerSpec:
    """The sampler of a spec that names none: the default one with its default settings."""
    return REGISTRY.get(DEFAULT).model_validate({})


from hpsearch.samplers import tpe  # noqa: E402  (the built-ins register themselves)

__all__ = ["DEFAULT", "REGISTRY", "SamplerSpec", "default", "register", "tpe"]
