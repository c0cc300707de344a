"""The registries behind hpsearch's variation points: samplers (:mod:`hpsearch.samplers`), schedulers
(:mod:`hpsearch.schedulers`) and data sources (:mod:`hpsearch.sources`).

Each entry is a spec model (a frozen pydantic model) whose discriminator field (``type``, or ``dataset``
for data) is a ``Literal`` with the entry's name as its default; the model holds the entry's settings
and does the entry's work (a sampler builds Optuna's sampler, a scheduler Tune's, a data source loads
its splits). The job spec validates a section with the model its discriminator names, so a spec error
names only the fields that entry has, and ``register`` adds an entry from outside the package::

    from typing import Literal
    from hpsearch import samplers

    @samplers.register
    class RandomSpec(samplers.SamplerSpec):
        type: Literal["random"] = "random"

        def build(self):
            import optuna
            return optuna.samplers.RandomSampler(seed=self.seed)
"""

from __future__ import annotations

import typing
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from hpsearch.errors import Problem


class Strict(BaseModel):
    """A spec section: unknown keys are errors, no coercion (``"3"`` is not 3), immutable once read."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def problems(self) -> list[Problem]:
        """What is wrong beyond each field on its own (fields that must agree, files that must exist), with
        paths relative to the section; checked once the whole spec is read."""
        return []


S = TypeVar("S", bound=Strict)


class Registry(Generic[S]):
    """Names -> spec models of one variation point, in registration order."""

    def __init__(self, what: str, base: type[S], key: str = "type"):
        self.what, self.base, self.key = what, base, key
        self._models: dict[str, type[S]] = {}

    def register(self, model: type[S]) -> type[S]:
        """Add ``model`` under the name its discriminator defaults to (usable as a class decorator).

        Raises:
            TypeError: ``model`` is not a subclass of the base spec, or its discriminator is not a
                ``Literal`` of one name with that name as default.
            ValueError: another model is registered under that name.
        """
        if not (isinstance(model, type) and issubclass(model, self.base)):
            raise TypeError(
                f"a {self.what} must subclass {self.base.__module__}.{self.base.__qualname__}, got {model!r}"
            )
        field = model.model_fields.get(self.key)
        name = field.default if field is not None else None
        literal = field is not None and typing.get_origin(field.annotation) is typing.Literal
        if not (literal and isinstance(name, str) and typing.get_args(field.annotation) == (name,)):  # type: ignore[union-attr]
            raise TypeError(
                f"{model.__qualname__}.{self.key} must be declared as {self.key}: Literal[NAME] = NAME "
                f"(the {self.what}'s name), got {field.annotation if field else None!r} = {name!r}"
            )
        existing = self._models.get(name)
        if existing is not None and existing is not model:
            raise ValueError(
                f"a {self.what} named {name!r} is registered already ({existing.__module__}.{existing.__qualname__})"
            )
        self._models[name] = model
        return model

    def names(self) -> list[str]:
        return list(self._models)

    def get(self, name: str) -> type[S]:
        """The model registered as ``name``.

        Raises:
            KeyError: naming the registered ones.
        """
        try:
            return self._models[name]
        except KeyError:
            raise KeyError(f"no {self.what} {name!r} (registered: {', '.join(self._models)})") from None

    def validate(self, value: Any, default: str | None = None) -> Any:
        """A pydantic ``before`` validator: a mapping is validated with the model its discriminator names
        (``default`` when it names none); anything else is left for the field's own type check."""
        if isinstance(value, self.base) or not isinstance(value, dict):
            return value
        name = value.get(self.key, default)
        if name not in self._models:
            *rest, last = [repr(n) for n in self._models] or ["nothing registered"]
            expected = f"{', '.join(rest)} or {last}" if rest else last
            missing = name is None
            kind = PydanticCustomError("missing_choice", "required: one of {expected}", {"expected": expected})
            raise ValidationError.from_exception_data(
                self.what,
                [
                    {
                        "type": kind if missing else "literal_error",
                        "loc": (self.key,),
                        "input": value if missing else name,
                        "ctx": {"expected": expected},
                    }
                ],
            )
        return self._models[name].model_validate(value)


__all__ = ["Registry", "Strict"]
