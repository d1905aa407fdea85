r"""recbole_fair.analysis.report
############################

How the analysis scripts of ``benchmarks/`` hand over a report: Markdown printed and saved, its
figures as JSON beside it.
"""

from __future__ import annotations

import json
import os
from typing import Any


def save_report(out: str | None, text: str, data: Any) -> None:
    r"""Print the Markdown ``text``; write it to ``out`` and ``data`` as JSON beside it
    (``.json``) when ``out`` is given."""
    print(text)
    if not out:
        return
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.splitext(out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    print(f"saved {out}")
