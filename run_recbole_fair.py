r"""Train and evaluate a recbole-fair or RecBole model: ``python run_recbole_fair.py --model=FAIR``.

Any other ``--key=value`` reaches RecBole's Config (e.g. ``--epochs=5 --hidden_size=128``).
With no ``--model`` and no ``--dataset`` it runs the quick-start preset: FAIR on ml-100k
(``properties/quick_start.yaml``), small enough for a 2-core CPU.

Comma-separated ``--model``/``--dataset`` lists, ``--seeds`` or any other leaderboard flag run a
leaderboard instead (``recbole_fair.leaderboard``, see docs/leaderboard.md), e.g.
``--model=FAIR,SASRec --dataset=ml-100k --seeds=2020,2021,2022``.
"""

import argparse
import os
import sys

from recbole_fair import leaderboard
from recbole_fair.quick_start import run_recbole_fair
from recbole_fair.utils import get_properties_dir

if __name__ == "__main__":
    # allow_abbrev=False: RecBole's --seed=N must not be taken for --seeds.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--model", "-m", type=str, default=None, help="model name (default FAIR)")
    parser.add_argument("--dataset", "-d", type=str, default=None, help="dataset (default ml-100k)")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated YAML files")
    leaderboard.add_arguments(parser)
    args, unknown = parser.parse_known_args()

    quick_start = []
    if args.model is None and args.dataset is None:
        quick_start = [os.path.join(get_properties_dir(), "quick_start.yaml")]
    if leaderboard.wants_leaderboard(args):
        leaderboard.cli(args, unknown, default_config_files=quick_start)
        sys.exit(0)

    config_files = args.config_files.strip().split(" ") if args.config_files else []
    run_recbole_fair(
        model=args.model or "FAIR",
        dataset=args.dataset or "ml-100k",
        config_file_list=quick_start + config_files or None,
    )
