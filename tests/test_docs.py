"""The documentation agrees with the YAML files it is generated from.

* docs/configuration.md is what ``python -m recbole_fair.docs_config`` renders now.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recbole_fair import docs_config

REPO = Path(__file__).resolve().parents[1]


def test_configuration_page_is_current():
    committed = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == docs_config.render(str(REPO / "properties")), (
        "docs/configuration.md is stale: python -m recbole_fair.docs_config > docs/configuration.md"
    )


def test_configuration_parser_reads_blocks_and_rejects_undocumented_keys():
    parsed = docs_config.parse_yaml_comments(
        "# Header.\n\n# Section\na: 1  # (int) One.\nb:  # (dict) Two.\n  x: 1\n  y: [2]\n"
        "c: 'a # b'  # (str) Quoted hash.\n",
        "x.yaml",
    )
    assert parsed.header == ["Header."]
    assert [(k.key, k.default, k.type) for k in parsed.keys] == [
        ("a", "1", "int"),
        ("b", "{x: 1, y: [2]}", "dict"),
        ("c", "'a # b'", "str"),
    ]
    with pytest.raises(ValueError, match=r"x.yaml:2: key 'b' needs"):
        docs_config.parse_yaml_comments("a: 1  # (int) One.\nb: 2  # no type\n", "x.yaml")
