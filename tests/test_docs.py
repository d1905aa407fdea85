"""The documentation agrees with the committed results and the YAML files, and stays inside the
repository.

* Every number of the results tables (README.md "Results at a glance", docs/results.md) is the
  number of the committed leaderboard (docs/leaderboards/<dataset>-e40/leaderboard.csv) to the
  precision printed.
* docs/configuration.md is what ``python -m recbole_fair.docs_config`` renders now.
* Every metric-like number of the docs' prose (``.dddd``) is a number of a committed result file
  (docs/leaderboards/: a leaderboard, a curve table, a raw result) to the precision printed.
* No hand-written doc names a machine path or links outside the repository.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from recbole_fair import docs_config
from recbole_fair.published import PUBLISHED

REPO = Path(__file__).resolve().parents[1]
LEADERBOARDS = REPO / "docs" / "leaderboards"
DATASETS = ("Amazon_Beauty", "Amazon_Scientific", "ml-100k")

# The rows of the results tables, by the name the docs print, mapped to their leaderboard.csv
# row: its label without the settings that name machine paths (MACHINE_KEYS). A results-table
# row whose name is not here fails the test: add it here with its leaderboard row.
ITEM_ID = "item_id_embedding=True, item_loss_weight=1.0"
ROWS = {
    "Amazon_Beauty": {
        "SASRec-CE": "SASRec",
        "FAIR, the paper's method": "FAIR [hidden_size=128, inner_size=256]",
        "FAIR, the paper's method at d=512 (GPU)": "FAIR",
        "FAIR, the paper's method, d=256, 10-epoch recipe": (
            "repro-e10",
            "FAIR [epochs=10, hidden_size=256, inner_size=512, learning_rate=0.005]",
        ),
        "FAIR, the paper's method, 10-epoch recipe": (
            "repro-e10",
            "FAIR [epochs=10, hidden_size=128, inner_size=256, learning_rate=0.01]",
        ),
        "FAIR, the paper's method, all-mpnet-base-v2 text encoder, 10-epoch recipe": (
            "repro-e10",
            "FAIR [epochs=10, hidden_size=128, inner_size=256, learning_rate=0.01, "
            "text_encoder=../mpnet/all-mpnet-base-v2]",
        ),
        "FAIR, the paper's method, d=256, 20-epoch recipe": (
            "repro-e10",
            "FAIR [epochs=20, hidden_size=256, inner_size=512, learning_rate=0.005]",
        ),
        "FAIR, the paper's method, d=512, 20-epoch recipe": ("repro-e10", "FAIR [epochs=20]"),
        "FAIR, standard attention, no NRT, no MIM, 10-epoch recipe": (
            "repro-e10",
            "FAIR [attention=standard, epochs=10, hidden_size=128, inner_size=256, "
            "learning_rate=0.01, mim_weight=0, nrt_weight=0]",
        ),
        "RPG, CPU recipe, 10 epochs": ("repro-e10", "RPG"),
        "TIGER, CPU size, 10 epochs": ("repro-e10", "TIGER"),
        "RPG, CPU recipe, input LayerNorm, 10 epochs": ("repro-e10", "RPG [input_layer_norm=True]"),
        "RPG, CPU recipe, input LayerNorm, epsilon 1e-5, 10 epochs": (
            "repro-e10",
            "RPG [input_layer_norm=True, layer_norm_eps=1e-5]",
        ),
        "popularity": ("repro-e10", "Pop"),
        "FAIR + item-ID digit + item-level loss": f"FAIR [hidden_size=128, inner_size=256, {ITEM_ID}]",
        "FAIR + item-ID digit + item-level loss + 16 random digits": (
            f"FAIR [hidden_size=128, inner_size=256, {ITEM_ID}, sid_random_digits=16]"
        ),
        "FAIR + 16 random digits": "FAIR [hidden_size=128, inner_size=256, sid_random_digits=16]",
        "FAIR + item-level loss": "FAIR [hidden_size=128, inner_size=256, item_loss_weight=1.0]",
        "FAIR, random IDs (no text)": "FAIR [hidden_size=128, inner_size=256, sid_method=random]",
        "RPG": "RPG",
        "GRU4Rec-CE": "GRU4Rec",
        "BERT4Rec-CE": "BERT4Rec",
    },
    "Amazon_Scientific": {
        "SASRec-CE": "SASRec",
        "FAIR, the paper's method": "FAIR",
        "FAIR + item-ID digit + item-level loss": f"FAIR [{ITEM_ID}]",
        "FAIR + item-ID digit + item-level loss + 16 random digits": (
            f"FAIR [{ITEM_ID}, sid_random_digits=16]"
        ),
        "FAIR + 16 random digits": "FAIR [sid_random_digits=16]",
        "FAIR + item-level loss": "FAIR [item_loss_weight=1.0]",
        "FAIR, random IDs (no text)": "FAIR [sid_method=random]",
        "FAIR, standard attention": "FAIR [attention=standard]",
        "FAIR, no NRT loss": "FAIR [nrt_weight=0.0]",
        "FAIR, no MIM loss": "FAIR [mim_weight=0.0]",
        "RPG": "RPG",
        "RPG without dropout": "RPG [attn_dropout_prob=0.0, input_dropout_prob=0.0]",
        "FAIR, the paper's method, 10-epoch recipe": (
            "repro-e10",
            "FAIR [epochs=10, learning_rate=0.01]",
        ),
        "FAIR, standard attention, 10-epoch recipe": (
            "repro-e10",
            "FAIR [attention=standard, epochs=10, learning_rate=0.01]",
        ),
        "FAIR, no NRT loss, 10-epoch recipe": (
            "repro-e10",
            "FAIR [epochs=10, learning_rate=0.01, nrt_weight=0]",
        ),
        "FAIR, no MIM loss, 10-epoch recipe": (
            "repro-e10",
            "FAIR [epochs=10, learning_rate=0.01, mim_weight=0]",
        ),
        "FAIR, 8 digits, 10-epoch recipe": (
            "repro-e10",
            "FAIR [epochs=10, learning_rate=0.01, n_codes=8]",
        ),
        "FAIR, 16 digits, 10-epoch recipe": (
            "repro-e10",
            "FAIR [epochs=10, learning_rate=0.01, n_codes=16]",
        ),
        "FAIR, 64 digits, 10-epoch recipe": (
            "repro-e10",
            "FAIR [epochs=10, learning_rate=0.01, n_codes=64]",
        ),
        "FAIR, whitened PCA to 128, 10-epoch recipe": (
            "repro-e10",
            "FAIR [epochs=10, learning_rate=0.01, sid_pca_dim=128, sid_pca_whiten=True]",
        ),
        "FAIR, all-mpnet-base-v2 text encoder, 10-epoch recipe": (
            "repro-e10",
            "FAIR [epochs=10, learning_rate=0.01, text_encoder=../mpnet/all-mpnet-base-v2]",
        ),
        "RPG, CPU recipe": ("repro-e10", "RPG"),
        "RPG, CPU recipe, input LayerNorm": ("repro-e10", "RPG [input_layer_norm=True]"),
        "FAIR, title, brand and categories only, 10-epoch recipe": (
            "repro-e10",
            "FAIR [epochs=10, learning_rate=0.01, text_fields=['title','brand','categories']]",
        ),
        "FAIR, standard attention, no NRT, no MIM, 10-epoch recipe": (
            "repro-e10",
            "FAIR [attention=standard, epochs=10, learning_rate=0.01, mim_weight=0, nrt_weight=0]",
        ),
        "RPG, CPU recipe, graph decoding": ("repro-e10", "RPG [decoding=graph]"),
        "TIGER, CPU size, 40-epoch cap": ("repro-e10", "TIGER"),
        "popularity": ("repro-e10", "Pop"),
        "GRU4Rec-CE": "GRU4Rec",
        "BERT4Rec-CE": "BERT4Rec",
    },
    "ml-100k": {
        "SASRec-CE": "SASRec",
        "FAIR, the paper's method": "FAIR",
        "FAIR + item-ID digit + item-level loss": f"FAIR [{ITEM_ID}]",
        "FAIR + item-ID digit + item-level loss, dropout 0.2": (
            f"FAIR [attn_dropout_prob=0.2, hidden_dropout_prob=0.2, {ITEM_ID}]"
        ),
        "RPG": "RPG",
        "GRU4Rec-CE": "GRU4Rec",
        "BERT4Rec-CE": "BERT4Rec",
    },
}
# Published rows: name -> (model, source) of recbole_fair.published.PUBLISHED[dataset].
PUBLISHED_ROWS = {
    "published: FAIR paper (d=512)": ("FAIR", "FAIR paper"),
    "published: RPG paper": ("RPG", "RPG paper"),
    "published: RecBole SASRec-CE": ("SASRec", "RecBole SASRec-CE, LETTER issue #20"),
    "published: TIGER paper": ("TIGER", "TIGER paper"),
}
METRICS = {"R@5": "recall@5", "N@5": "ndcg@5", "R@10": "recall@10", "N@10": "ndcg@10"}
MACHINE_KEYS = {"data_path", "sid_cache_dir"}
# cost columns a results table may show: leaderboard.md's cell, as leaderboard.md prints it
COSTS = ("train s/epoch", "eval users/s")


def strip_machine_settings(label: str) -> str:
    """``FAIR [data_path=/x, hidden_size=128]`` -> ``FAIR [hidden_size=128]``."""
    match = re.fullmatch(r"(\S+)(?: \[(.*)\])?", label)
    assert match, label
    model, settings = match[1], match[2]
    if not settings:
        return model
    kept = [s for s in settings.split(", ") if s.split("=", 1)[0] not in MACHINE_KEYS]
    return f"{model} [{', '.join(kept)}]" if kept else model


def leaderboard(dataset: str, board: str = "e40") -> dict[str, dict[str, str]]:
    """The committed leaderboard.csv of ``dataset`` (folder ``<dataset>-<board>``), by label
    without machine settings; each row also gets ``p_printed``, the p-value cell of
    leaderboard.md (3 significant digits, where the CSV rounds to 8 decimals)."""
    folder = LEADERBOARDS / f"{dataset}-{board}"
    rows = {}
    with open(folder / "leaderboard.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            key = strip_machine_settings(row["model"])
            assert key not in rows, f"{dataset}: two rows labelled {key!r}"
            rows[key] = row
    for table in markdown_tables((folder / "leaderboard.md").read_text(encoding="utf-8")):
        p_column = next(c for c in table["header"] if c.startswith("p (N@10"))
        for cells in table["rows"]:
            row = rows[strip_machine_settings(cells["model"])]
            row["p_printed"] = cells[p_column]
            for column in COSTS:
                row[f"{column} printed"] = plain(cells[column])
    return rows


def markdown_tables(text: str) -> list[dict]:
    """Every pipe table of a Markdown text (outside code blocks): its header cells, its rows
    (dicts by header) and the last heading above it."""
    tables, heading, lines = [], "", text.splitlines()
    i, in_code = 0, False
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            i += 1
            continue
        if line.startswith("#"):
            heading = line
        if (
            line.startswith("|")
            and i + 1 < len(lines)
            and re.match(r"^\|[-:| ]+\|$", lines[i + 1].strip())
        ):
            header = split_row(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = split_row(lines[i].strip())
                rows.append(dict(zip(header, cells)))
                i += 1
            tables.append({"heading": heading, "header": header, "rows": rows})
            continue
        i += 1
    return tables


def split_row(line: str) -> list[str]:
    """Cells of one table row (escaped pipes kept inside their cell)."""
    cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
    return [c.strip() for c in cells]


def plain(cell: str) -> str:
    """A cell without bold markers."""
    return cell.replace("**", "").strip()


def results_tables(path: Path) -> list[tuple[str, dict]]:
    """(dataset, table) for every table of ``path`` with R@5 ... N@10 columns, the dataset named
    by the heading above it."""
    found = []
    for table in markdown_tables(path.read_text(encoding="utf-8")):
        if not set(METRICS) <= set(table["header"]):
            continue
        named = [d for d in DATASETS if d in table["heading"]]
        assert len(named) == 1, f"{path.name}: a results table under {table['heading']!r}"
        found.append((named[0], table))
    return found


def assert_number(printed: str, value: float, what: str) -> None:
    """``printed`` (e.g. ``.0454``) is ``value`` rounded to the decimals printed."""
    match = re.fullmatch(r"-?\d*\.(\d+)", printed)
    assert match, f"{what}: {printed!r} is not a decimal number"
    tolerance = 0.5 * 10 ** -len(match[1]) + 1e-12
    assert abs(float(printed) - value) <= tolerance, f"{what}: printed {printed}, file {value:.8g}"


def assert_p_value(printed: str, row: dict[str, str], what: str) -> None:
    """``printed`` (``0.0016``, ``4e-7``) is the row's p-value to the significant digits printed."""
    if printed == "ref":
        assert row["p_value"] == "", f"{what}: printed 'ref', the file has p = {row['p_value']}"
        return
    value = float(row["p_value"]) if float(row["p_value"] or 0) >= 1e-4 else float(row["p_printed"])
    mantissa = re.sub(r"e.*$", "", printed).lstrip("0.").replace(".", "")
    digits = len(mantissa)
    assert digits >= 1, f"{what}: p {printed!r}"
    rounded = float(f"{value:.{digits - 1}e}")
    assert abs(rounded - float(printed)) <= 1e-9 * abs(rounded), (
        f"{what}: printed p = {printed}, file {value:.3g}"
    )


def assert_seeds(printed: str, seeds: str, what: str) -> None:
    """``3`` (a count), ``2020``, ``2020, 2021`` or ``2020–2022`` against ``2020,2021,2022``."""
    actual = [int(s) for s in seeds.split(",")]
    text = printed.replace(" ", "")
    if re.fullmatch(r"\d{1,2}", text):
        assert int(text) == len(actual), f"{what}: {printed} seeds, the file has {seeds}"
        return
    if re.fullmatch(r"\d{4}[–-]\d{4}", text):
        first, last = (int(s) for s in re.split("[–-]", text))
        expected = list(range(first, last + 1))
    else:
        expected = [int(s) for s in text.split(",")]
    assert expected == actual, f"{what}: seeds {printed}, the file has {seeds}"


def check_results_table(dataset: str, table: dict, where: str) -> int:
    """Assert every number of one results table; returns the number of rows checked."""
    board = leaderboard(dataset)
    names = ROWS[dataset]
    for cells in table["rows"]:
        name = plain(cells[table["header"][0]])
        what = f"{where}, {dataset}, {name!r}"
        if name in PUBLISHED_ROWS:
            model, source = PUBLISHED_ROWS[name]
            entry = next(e for e in PUBLISHED[dataset][model] if e["source"] == source)
            for column, metric in METRICS.items():
                if plain(cells[column]):
                    assert_number(plain(cells[column]), entry[metric], f"{what} {column}")
            continue
        assert name in names, f"{what}: not in tests/test_docs.py ROWS[{dataset!r}]"
        # a row from another leaderboard of the dataset is named (board, label)
        folder, label = names[name] if isinstance(names[name], tuple) else ("e40", names[name])
        row = (board if folder == "e40" else leaderboard(dataset, folder))[label]
        for column, metric in METRICS.items():
            printed = plain(cells[column]).split("±")
            assert_number(printed[0].strip(), float(row[f"{metric}_mean"]), f"{what} {column}")
            if len(printed) == 2:
                std = float(row[f"{metric}_std"])
                assert_number(printed[1].strip(), std, f"{what} {column} std")
        if "seeds" in cells:
            assert_seeds(plain(cells["seeds"]), row["seeds"], what)
        p_column = next((c for c in table["header"] if c.startswith("p (")), None)
        if p_column:
            assert_p_value(plain(cells[p_column]), row, f"{what} p")
        for column in COSTS:
            if column in cells:
                printed = plain(cells[column])
                assert printed == row[f"{column} printed"], (
                    f"{what} {column}: printed {printed}, leaderboard.md {row[f'{column} printed']}"
                )
        if "best epoch" in cells:
            assert plain(cells["best epoch"]) == row["best_epochs"], f"{what} best epoch"
    return len(table["rows"])


def test_readme_results_tables_match_the_leaderboards():
    tables = results_tables(REPO / "README.md")
    assert [d for d, _ in tables] == list(DATASETS), "one table per dataset, in this order"
    for dataset, table in tables:
        assert 3 <= check_results_table(dataset, table, "README.md") <= 7


def test_results_page_tables_match_the_leaderboards():
    tables = results_tables(REPO / "docs" / "results.md")
    assert sorted({d for d, _ in tables}) == sorted(DATASETS)
    assert sum(check_results_table(d, t, "docs/results.md") for d, t in tables) >= 20


def test_a_wrong_number_is_caught():
    table = {
        "header": ["model", "seeds", "R@5", "N@5", "R@10", "N@10"],
        "rows": [
            # the file: N@10 .04156667, printed to 4 decimals .0416
            {
                "model": "SASRec-CE",
                "seeds": "3",
                "R@5": ".0559",
                "N@5": ".0326",
                "R@10": ".0837",
                "N@10": ".0417",
            }
        ],
    }
    with pytest.raises(AssertionError, match="N@10"):
        check_results_table("Amazon_Beauty", table, "test")
    table["rows"][0]["N@10"] = ".0416"
    assert check_results_table("Amazon_Beauty", table, "test") == 1
    # a cost column is leaderboard.md's cell as printed there (SASRec-CE on Beauty: 4,667 users/s)
    table["header"].append("eval users/s")
    table["rows"][0]["eval users/s"] = "4,676"
    with pytest.raises(AssertionError, match="eval users/s"):
        check_results_table("Amazon_Beauty", table, "test")
    table["rows"][0]["eval users/s"] = "4,667"
    assert check_results_table("Amazon_Beauty", table, "test") == 1


# a metric as the docs print it: four decimals without the leading zero (.0416); p-values and
# other numbers are printed with their zero (0.0016) and are not matched
PROSE_METRIC = re.compile(r"(?<![\d.])\.\d{4}(?!\d)")
RESULT_NUMBER = re.compile(r"-?\d*\.\d+(?:[eE]-?\d+)?")


def result_file_numbers(root: Path = LEADERBOARDS) -> set[str]:
    r"""Every number below 1 of the committed result files under ``root`` (csv, md, json,
    jsonl), printed as the docs print metrics: ``.dddd``."""
    numbers = set()
    for path in root.rglob("*"):
        if path.suffix in (".csv", ".md", ".json", ".jsonl"):
            for token in RESULT_NUMBER.findall(path.read_text(encoding="utf-8")):
                value = abs(float(token))
                if value < 1:
                    numbers.add(f"{value:.4f}"[1:])
    return numbers


def unbacked_prose_metrics(text: str, numbers: set[str]) -> list[str]:
    r"""The metric-like numbers of ``text``'s prose (table rows are checked elsewhere) that no
    result file holds, each with the words before it."""
    prose = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("|"))
    return [
        f"{match.group()} ({prose[max(0, match.start() - 60) : match.start()].split(chr(10))[-1]})"
        for match in PROSE_METRIC.finditer(prose)
        if match.group() not in numbers
    ]


def test_every_metric_in_the_prose_is_a_committed_result():
    numbers = result_file_numbers()
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    unbacked = {
        str(doc.relative_to(REPO)): found
        for doc in docs
        if (found := unbacked_prose_metrics(doc.read_text(encoding="utf-8"), numbers))
    }
    assert not unbacked, (
        f"numbers in the prose that no result file under docs/leaderboards has: {unbacked}"
    )


def test_the_prose_check_catches_a_number_no_result_has(tmp_path):
    (tmp_path / "board").mkdir()
    (tmp_path / "board" / "leaderboard.csv").write_text("model,N@10\nFAIR,0.04156667\n")
    (tmp_path / "results.jsonl").write_text('{"test_result": {"recall@5": 0.0499}}\n')
    numbers = result_file_numbers(tmp_path)
    text = "FAIR scores .0416 and .0499 (p = 0.0016).\n| table | .1234 |\nbut not .0417."
    assert unbacked_prose_metrics(text, numbers) == [".0417 (but not )"]


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


def hand_written_docs() -> list[Path]:
    """README.md and docs/**/*.md, except the generated files of docs/leaderboards/ (all but its
    README.md: leaderboard.md, per-user buckets, code_sets.md...)."""
    docs = [REPO / "README.md"] + sorted((REPO / "docs").rglob("*.md"))
    generated = [p for p in docs if LEADERBOARDS in p.parents and p != LEADERBOARDS / "README.md"]
    return [p for p in docs if p not in generated]


def test_docs_name_no_machine_paths_and_link_inside_the_repository():
    problems = []
    for path in hand_written_docs():
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(REPO)
        for pattern in ("/work/", "/tmp/", "../shared/design"):
            if pattern in text:
                problems.append(f"{name}: contains {pattern!r}")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            resolved = (path.parent / target.split("#")[0]).resolve()
            if REPO not in resolved.parents and resolved != REPO:
                problems.append(f"{name}: links outside the repository: {target}")
            elif not resolved.exists():
                problems.append(f"{name}: broken link: {target}")
    assert not problems, "\n".join(problems)


def test_committed_results_name_no_machine_paths():
    """The raw result files under docs/leaderboards hold paths relative to the run's working
    directory (``recbole_fair.leaderboard.runner.relative_paths``), never a machine's."""
    problems = [
        f"{path.relative_to(REPO)}: contains {pattern!r}"
        for path in sorted(LEADERBOARDS.rglob("*"))
        if path.suffix in (".json", ".jsonl", ".csv", ".md")
        for pattern in ('"/work/', '"/tmp/', '"/home/', '"/root/')
        if pattern in path.read_text(encoding="utf-8")
    ]
    assert not problems, "\n".join(problems)


CURVES_BLOCK = re.compile(r"<!-- curves: (\S+) -->\n(.*?)<!-- /curves -->", re.S)


def test_learning_curve_tables_are_the_generated_ones():
    """A learning-curve table in docs/results.md is pasted between ``<!-- curves: FILE -->`` and
    ``<!-- /curves -->`` from ``FILE`` (written by benchmarks/plot_curves.py): it must be that
    file's table, number for number."""
    text = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    blocks = CURVES_BLOCK.findall(text)
    for name, block in blocks:
        generated = (REPO / "docs" / name).read_text(encoding="utf-8")
        table = "\n".join(line for line in generated.splitlines() if line.startswith("|"))
        assert block.strip() == table.strip(), f"docs/results.md: the table from {name} is stale"
