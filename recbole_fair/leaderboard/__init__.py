r"""recbole_fair.leaderboard
#########################

Leaderboards: every (model, dataset, seed) *cell* trained and evaluated with the same protocol
(:func:`recbole_fair.quick_start.run_recbole_fair`), one JSON line per finished cell in
``results.jsonl``, rendered as Markdown, CSV and PNG.

* **Resumable.** A cell's record (config, metrics, costs, per-user test NDCG@10, versions, git
  commit) is appended before the next cell starts; ``resume=True`` skips finished cells. While a
  cell trains, a *last-epoch* checkpoint is written every epoch (through
  ``Trainer._save_checkpoint``, so it is signed, see :mod:`recbole_fair.compat`) next to the
  cell's best checkpoint, at paths derived from the cell (model, dataset, seed, config hash); a
  resumed cell continues from the epoch after it with RecBole's ``Trainer.resume_checkpoint``.
  A cell whose training stopped at the deadline (``RECBOLE_FAIR_FIT_DEADLINE``) with epochs
  left is recorded and keeps that checkpoint: ``resume=True`` continues it and its new record
  supersedes the earlier one.
* **Crash-tolerant.** An exception in a cell is recorded with its traceback and the next cell
  runs. By default each cell runs in its own process (``isolate=True``): a hard crash (out of
  memory, segfault) is recorded too, and the peak RSS reported is that cell's own; with a
  ``cell_timeout``, a cell's process running longer is killed and recorded as failed too (a
  hang in native code no longer blocks the leaderboard).
* **Significance.** Against a reference model (SASRec by default when present): a paired test
  (Wilcoxon signed-rank or t-test) on per-user NDCG@10, averaged over seeds, when every cell kept
  its per-user values on the same users; else a paired t-test across seeds.

CLI: ``python run_recbole_fair.py --model=FAIR,SASRec --dataset=ml-100k --seeds=2020,2021``
(see ``docs/leaderboard.md``).

Modules, each importing only those above it:

* :mod:`.results`: the results file (JSON lines), record fields, versions and git commit;
* :mod:`.cells`: a cell's spec, key, config hash and checkpoint paths;
* :mod:`.stats`: means over seeds, paired significance tests;
* :mod:`.summary`: one row per model configuration and dataset, its label;
* :mod:`.plot`, :mod:`.tables`: ``leaderboard.png``, ``leaderboard.md`` and ``.csv``;
* :mod:`.hook`: the trainer hook of a cell (last-epoch checkpoints, resume, per-user values);
* :mod:`.runner`: running cells, in this process or one process each, STOP, resume;
* :mod:`.command`: the command-line flags and :func:`cli`.

The names below are re-exported for ``from recbole_fair import leaderboard as lb``; to replace
one in a test (``monkeypatch``), patch it in the module that uses it (e.g.
``recbole_fair.leaderboard.runner.append_record``).
"""

from recbole_fair.leaderboard.cells import CellSpec, build_cells, checkpoint_paths, config_hash
from recbole_fair.leaderboard.command import (
    add_arguments,
    check_arguments,
    cli,
    load_model_config,
    wants_leaderboard,
)
from recbole_fair.leaderboard.hook import CellHook, PerUserCapture, StopRequested
from recbole_fair.leaderboard.plot import to_png
from recbole_fair.leaderboard.results import (
    RESULTS_FILE,
    append_record,
    finished_cells,
    finished_records,
    git_commit,
    latest_records,
    load_results,
    versions,
)
from recbole_fair.leaderboard.runner import (
    FAILED_EXIT_CODE,
    KILL_GRACE_SECONDS,
    STOP_FILE,
    STOPPED_EXIT_CODE,
    argv_as,
    check_cell_timeout,
    execute_cell,
    execute_cell_isolated,
    exit_status,
    run_leaderboard,
    watch_parent,
)
from recbole_fair.leaderboard.stats import (
    DEFAULT_REFERENCE,
    PER_USER_METRIC,
    SIGNIFICANCE_LEVEL,
    add_significance,
    mean_std,
    paired_test,
)
from recbole_fair.leaderboard.summary import (
    CSV_METRICS,
    LOCATION_KEYS,
    QUALITY,
    group_cells,
    summarise,
    variant_labels,
)
from recbole_fair.leaderboard.tables import (
    cell_text,
    mark_best,
    render,
    render_file,
    to_csv,
    to_markdown,
)
