"""Operator-chosen plugins: Python modules that register blocks, frontends, vocoders or backends.

An addon names types only; it cannot make ttsstack import anything. The
operator opts in, in one of two ways:

- ``--plugin MODULE`` on the command line (repeatable, or a comma list): the
  module is imported by name, as ``import MODULE`` would (from ``sys.path``);
- an installed distribution that declares an entry point in the
  ``ttsstack.plugins`` group (installing it is the opt-in)::

      [project.entry-points."ttsstack.plugins"]
      my_blocks = "my_package.blocks"

Importing the module runs its ``@BLOCKS.register(...)`` (or ``FRONTENDS``,
``VOCODERS``, ``BACKENDS``) decorators; nothing else is called.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "ttsstack.plugins"


class PluginError(RuntimeError):
    """A plugin that could not be imported, named with how it was asked for."""


def load_plugins(modules: list[str] = (), entry_point_group: str | None = ENTRY_POINT_GROUP) -> list[str]:
    """Import the ``--plugin`` modules, then every entry point of ``entry_point_group``; return what was loaded.

    Each is imported once (a module already imported is not re-run). A module
    that cannot be imported is a :class:`PluginError` naming it and the cause.
    """
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure of a plugin's import is reported as the plugin's
            raise PluginError(f"--plugin {name}: cannot import it: {type(exc).__name__}: {exc}") from exc
        loaded.append(name)
    if entry_point_group:
        for point in entry_points(group=entry_point_group):
            try:
                point.load()
            except Exception as exc:  # noqa: BLE001
                origin = point.dist.name if point.dist else "?"
                raise PluginError(
                    f"entry point '{point.name}' ({point.value}) of the installed package {origin} "
                    f"in group {entry_point_group}: cannot import it: {type(exc).__name__}: {exc}"
                ) from exc
            loaded.append(f"{point.name} = {point.value}")
    return loaded
