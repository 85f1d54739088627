"""Registries of the named things a config can refer to, declared in one place.

- ``BLOCKS``: integration block types named by ``type:`` in an addon's ``stack``.
- ``FRONTENDS``: text frontends named by ``frontend.type``.
- ``VOCODERS``: vocoder blocks named by ``vocoder.type``.
- ``BACKENDS``: compile/run targets named by ``--backend``.

Types come only from these registries (built in or registered by installed
plugins), never from a module path in a config, so loading an addon runs no
code of the addon's author.
"""

from __future__ import annotations

import inspect
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown or duplicate registry name."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to classes; duplicates and unknown names are errors that explain themselves."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator adding the class under ``name``."""

        def add(obj: T) -> T:
            origin = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
            if name in self._entries:
                raise RegistryError(
                    f"{self.kind} '{name}' is already registered by {self._origins[name]}; "
                    f"cannot register {origin} under the same name"
                )
            self._entries[name] = obj
            try:
                self._origins[name] = f"{origin} ({inspect.getsourcefile(obj)})"  # type: ignore[arg-type]
            except TypeError:
                self._origins[name] = origin
            return obj

        return add

    def unregister(self, name: str) -> None:
        """Remove a name (tests and plugins that replace themselves)."""
        self._entries.pop(name, None)
        self._origins.pop(name, None)

    def get(self, name: str) -> T:
        """The entry registered under ``name``; unknown names list the known ones."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise RegistryError(f"unknown {self.kind} '{name}'; known: {known}") from None

    def find(self, name: str) -> T | None:
        """The entry under ``name``, or None."""
        return self._entries.get(name)

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


BLOCKS: Registry[type] = Registry("block type")  # integration blocks
FRONTENDS: Registry[type] = Registry("frontend")  # text -> token ids
VOCODERS: Registry[type] = Registry("vocoder")  # mel stream -> audio stream
BACKENDS: Registry[type] = Registry("backend")  # compile + load targets
