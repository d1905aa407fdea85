r"""Render ``docs/configuration.md`` from the comments of recbole-fair's YAML files.

Every key of ``properties/*.yaml`` carries a trailing comment in RecBole's house style,
``key: value  # (type) description``. This module turns each file into one Markdown table
(key, default, type, description), so the configuration reference is the YAML itself and cannot
drift from it::

    python -m recbole_fair.docs_config > docs/configuration.md

``tests/test_docs.py`` regenerates the page and fails when the committed one differs. A key
without a ``# (type) description`` comment is an error naming the file and line.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field

from recbole_fair.paths import get_properties_dir

# Files in the order of the page: the layering order of the config, then the model presets (the
# paper's models first), then the dataset presets and the quick start.
FIRST_FILES = ["overall.yaml", "semantic_ids.yaml"]
FIRST_MODELS = ["FAIR", "RPG", "TIGER"]
LAST_FILES = ["quick_start.yaml"]

_KEY_LINE = re.compile(r"^(?P<key>[A-Za-z_][\w.]*):(?P<rest>.*)$")
_TYPED_COMMENT = re.compile(r"^\((?P<type>[^)]*)\)\s*(?P<description>.*)$")


@dataclass
class ConfigKey:
    r"""One top-level key of a YAML file with its documentation comment."""

    key: str
    default: str
    type: str
    description: str
    line: int


@dataclass
class ConfigFile:
    r"""A YAML file of ``properties/``: its header comment and its documented keys."""

    path: str  # relative to properties/, with forward slashes
    header: list[str] = field(default_factory=list)
    keys: list[ConfigKey] = field(default_factory=list)


def _split_comment(text: str) -> tuple[str, str | None]:
    r"""Split ``value  # comment`` at the first ``#`` outside quotes."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].strip(), text[i + 1 :].strip()
    return text.strip(), None


def parse_yaml_comments(text: str, path: str) -> ConfigFile:
    r"""Parse one properties YAML file (the layout of ``properties/``, not YAML in general).

    Args:
        text: the file's content.
        path: its name relative to ``properties/`` (used in error messages and headings).

    Returns:
        The file's leading comment lines (without ``#``) and its top-level keys in order; the
        indented lines of a block mapping (e.g. ``eval_args``) become the key's flow-style
        default ``{a: 1, b: 2}``.

    Raises:
        ValueError: a top-level key without a ``# (type) description`` comment.
    """
    out = ConfigFile(path=path)
    in_header = True
    block: list[str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        stripped = line.strip()
        if in_header:
            if stripped.startswith("#"):
                out.header.append(stripped.lstrip("#").strip())
                continue
            in_header = False
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace():  # continuation of a block mapping
            if block is None:
                raise ValueError(f"properties/{path}:{number}: indented line outside a key")
            block.append(_split_comment(stripped)[0])
            continue
        if block is not None:
            out.keys[-1].default = "{" + ", ".join(block) + "}"
            block = None
        match = _KEY_LINE.match(line)
        if match is None:
            raise ValueError(f"properties/{path}:{number}: not a 'key: value' line: {line!r}")
        value, comment = _split_comment(match["rest"])
        typed = _TYPED_COMMENT.match(comment or "")
        if typed is None:
            raise ValueError(
                f"properties/{path}:{number}: key {match['key']!r} needs a trailing comment "
                "'# (type) description'"
            )
        out.keys.append(ConfigKey(match["key"], value, typed["type"], typed["description"], number))
        if value == "":
            block = []
    if block is not None:
        out.keys[-1].default = "{" + ", ".join(block) + "}"
    return out


def config_files(properties_dir: str | None = None) -> list[str]:
    r"""The YAML files of ``properties/`` in page order, relative to it."""
    root = properties_dir or get_properties_dir()
    models = sorted(f[:-5] for f in os.listdir(os.path.join(root, "model")) if f.endswith(".yaml"))
    models = [m for m in FIRST_MODELS if m in models] + [m for m in models if m not in FIRST_MODELS]
    datasets = sorted(f for f in os.listdir(os.path.join(root, "dataset")) if f.endswith(".yaml"))
    files = [f for f in FIRST_FILES if os.path.exists(os.path.join(root, f))]
    files += [f"model/{m}.yaml" for m in models] + [f"dataset/{d}" for d in datasets]
    files += [f for f in LAST_FILES if os.path.exists(os.path.join(root, f))]
    return files


def _cell(text: str) -> str:
    r"""Text safe inside a Markdown table cell (no pipes, emphasis, strike-through or tags)."""
    for ch in "\\|*~":
        text = text.replace(ch, "\\" + ch)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    r"""``text`` as inline code inside a table cell."""
    return "`" + text.replace("|", "\\|") + "`" if text else ""


def _anchor(path: str) -> str:
    r"""GitHub's heading anchor of ``properties/<path>``."""
    return re.sub(r"[^a-z0-9 _-]", "", f"properties/{path}".lower()).replace(" ", "-")


INTRO = """\
# Configuration reference

<!-- Generated by `python -m recbole_fair.docs_config > docs/configuration.md` from the comments
of properties/*.yaml. Edit the YAML files, not this page: tests/test_docs.py fails when it is
stale. -->

Every key can be set in a YAML file (`--config_files="a.yaml b.yaml"`), in `config_dict` (Python)
or as `--key=value` on the command line. Layering, lowest priority first: RecBole's defaults <
`properties/overall.yaml` < `properties/semantic_ids.yaml` (models with semantic IDs: FAIR, RPG,
TIGER) < `properties/model/<Model>.yaml` < `properties/dataset/<dataset>.yaml` <
`--config_files` < `config_dict` < `--key=value`. `properties/quick_start.yaml` applies only to
`python run_recbole_fair.py` run with neither `--model` nor `--dataset`. An unknown key is
reported with the closest known one (`strict_config: True` makes it an error). RecBole's own
keys not listed here keep RecBole's defaults (see RecBole's documentation). Brackets and
parentheses in a description say where a value comes from: the paper, RPG's code or recipe, or
a reconstruction (our choice where the paper is silent); FAIR.md and BENCHMARK.md are the
project's design and benchmark notes, kept outside this repository.
"""

OUTRO = """\
## Keys outside these files

FAIR, RPG and the action models read every key from their YAML file above, once, into a
settings dataclass (`FAIRSettings`, `ActionModelSettings`, `AttnLFASettings` in
`recbole_fair/model/`) that checks each value and names the key of a bad one. RPG leaves FAIR's
focused-attention, NRT and MIM keys out: it fixes those parts off. The recbole-fair extensions
(`input_dropout_prob`, `item_id_embedding`, `item_loss_weight`, `decoding: graph`) are described
in [rpg_and_ablations.md](rpg_and_ablations.md); the Transformer keys of TIGER in
[tiger.md](tiger.md), those of the action models in [action_models.md](action_models.md).
"""


def render(properties_dir: str | None = None) -> str:
    r"""The Markdown page: one table per YAML file of ``properties/``.

    Args:
        properties_dir: the ``properties/`` directory (default: the installed one).

    Returns:
        The page's text, ending with a newline.
    """
    root = properties_dir or get_properties_dir()
    parsed = []
    for rel in config_files(root):
        with open(os.path.join(root, rel), encoding="utf-8") as f:
            parsed.append(parse_yaml_comments(f.read(), rel))
    lines = [INTRO]
    lines.append("Files: " + ", ".join(f"[{c.path}](#{_anchor(c.path)})" for c in parsed) + ".\n")
    for conf in parsed:
        lines.append(f"## properties/{conf.path}\n")
        if conf.header:
            lines.append(_cell(" ".join(h for h in conf.header if h)) + "\n")
        lines.append("| key | default | type | description |")
        lines.append("|---|---|---|---|")
        for k in conf.keys:
            row = [_code(k.key), _code(k.default), _cell(k.type), _cell(k.description)]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines.append(OUTRO)
    return "\n".join(lines)


def main() -> None:
    r"""Print the page (``python -m recbole_fair.docs_config > docs/configuration.md``)."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
