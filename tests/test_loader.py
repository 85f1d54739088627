"""``ttsstack.load`` of a source addon: compiled into the cache, and refreshed when the source changes."""

from __future__ import annotations

import yaml

import ttsstack


def _rename(folder, name):
    data = yaml.safe_load((folder / "addon.yaml").read_text())
    (folder / "addon.yaml").write_text(yaml.safe_dump({**data, "name": name}, sort_keys=False))


def test_an_edited_source_addon_is_reloaded_on_eager(tiny_copy, capsys):
    assert ttsstack.load(tiny_copy, backend="eager").spec.name == "tiny"
    _rename(tiny_copy, "tiny-edited")
    assert ttsstack.load(tiny_copy, backend="eager").spec.name == "tiny-edited"


def test_a_cache_hit_says_cached_instead_of_a_progress_bar(tiny_copy, capsys):
    ttsstack.load(tiny_copy, backend="eager")
    capsys.readouterr()
    ttsstack.load(tiny_copy, backend="eager")
    err = capsys.readouterr().err
    assert "cached" in err and "nothing to compile" in err and "compile:" not in err
