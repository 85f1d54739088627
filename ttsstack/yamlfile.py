"""YAML from untrusted files, bounded in the size it expands to.

YAML anchors and aliases let a few kilobytes name ten million values (an
"alias bomb"): PyYAML shares aliased objects, but everything downstream
(validation, copies, ``yaml.safe_dump``) walks the expanded tree. Authors may
use anchors legitimately, so instead of refusing them :func:`load_yaml`
counts the nodes the document expands to, on the composed node graph before
any Python object is built, and refuses documents above :data:`MAX_YAML_NODES`
or with recursive aliases.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_YAML_NODES = 100_000
"""Most nodes (scalars, keys, lists, mappings) a document may expand to; an addon.yaml holds hundreds."""
MAX_YAML_CHARS = 4 << 20
"""Longest document read (4 Mi characters); a manifest of hundreds of artifacts is tens of kilobytes."""


class YamlError(ValueError):
    """A YAML document that cannot be read: invalid, recursive or too large once expanded."""


def load_yaml(text: str, source: str, limit: int = MAX_YAML_NODES) -> Any:
    """Parse ``text`` (from ``source``, named in errors) with the safe loader, bounding its expanded size."""
    if len(text) > MAX_YAML_CHARS:
        raise YamlError(f"{source}: {len(text):,} characters, more than the {MAX_YAML_CHARS:,} a config may hold")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {}, limit, source)
        if size > limit:
            raise YamlError(
                f"{source}: the document expands to more than {limit:,} YAML nodes "
                "(anchors and aliases repeat their content); refusing it"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise YamlError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise YamlError(f"{source}: the document is nested too deeply") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, memo: dict[int, int], limit: int, source: str) -> int:
    """Nodes under ``node`` once every alias is expanded (aliases share node objects); stops past ``limit``."""
    key = id(node)
    if key in memo:
        if memo[key] < 0:
            raise YamlError(f"{source}: line {node.start_mark.line + 1}: an alias refers to a node that contains it (recursive YAML)")
        return memo[key]
    memo[key] = -1
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [item for pair in node.value for item in pair]
    else:
        children = []
    for child in children:
        total += _expanded_size(child, memo, limit, source)
        if total > limit:
            break
    memo[key] = total
    return total
