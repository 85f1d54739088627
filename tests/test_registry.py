"""Registries: duplicates and unknown names explain themselves."""

from __future__ import annotations

import pytest

from ttsstack.runtime.registry import BLOCKS, Registry, RegistryError


def test_duplicate_names_say_where_the_first_was_registered():
    reg = Registry("thing")

    @reg.register("a")
    class First:
        pass

    with pytest.raises(RegistryError, match=r"thing 'a' is already registered by .*First"):

        @reg.register("a")
        class Second:
            pass


def test_unknown_names_list_the_known_ones():
    with pytest.raises(RegistryError, match=r"unknown block type 'Decodr'; known: .*Decoder.*Encoders"):
        BLOCKS.get("Decodr")
