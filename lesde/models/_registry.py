"""Registries of named model parts (gradient models, kinds of noise, schedules): one
way to register a class by its `name` and to look one up."""

import keyword
from typing import TypeVar

T = TypeVar("T", bound=type)


def register_class(
    registry: dict[str, type], cls: T, base: type, what: str, via: str, *,
    identifier: bool = True,
) -> T:
    """Add `cls` to `registry` under its class attribute `name` and return it. `cls`
    must be a concrete subclass of `base`; with `identifier` its name must be a Python
    identifier (it is a keyword argument or a part of paths). Registering the same
    class again is allowed (a module imported twice); another class under a name in use
    is refused. `what` names the registry in errors ('noise', 'schedule', ...), `via`
    the function that registers."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{via} takes a subclass of {base.__name__}, got {cls!r}")
    name = getattr(cls, "name", None)
    ok = isinstance(name, str) and bool(name) and (
        not identifier or (name.isidentifier() and not keyword.iskeyword(name))
    )
    if not ok:
        raise ValueError(
            f"{cls.__name__} needs a class attribute name: ClassVar[str]"
            + (", an identifier" if identifier else "") + f", got {name!r}"
        )
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise ValueError(f"{cls.__name__} must define {missing}")
    old = registry.get(name)
    if old is not None and old.__qualname__ != cls.__qualname__:
        raise ValueError(f"a {what} named {name!r} is registered already ({old.__qualname__})")
    registry[name] = cls
    return cls


def registered(registry: dict[str, type], name: str, what: str, via: str) -> type:
    """The class registered as `name`, or a ValueError listing the registered names."""
    if name not in registry:
        raise ValueError(
            f"unknown {what} {name!r}; choose one of {list(registry)} or register one with "
            f"lesde.models.{via}"
        )
    return registry[name]
