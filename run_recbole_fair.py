r"""Train and evaluate a recbole-fair or RecBole model: ``python run_recbole_fair.py --model=FAIR``.

Any other ``--key=value`` reaches RecBole's Config (e.g. ``--epochs=5 --hidden_size=128``).
With no ``--model`` and no ``--dataset`` it runs the quick-start preset: FAIR on ml-100k
(``properties/quick_start.yaml``), small enough for a 2-core CPU.
"""

import argparse
import os

from recbole_fair.quick_start import run_recbole_fair
from recbole_fair.utils import get_properties_dir

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "-m", type=str, default=None, help="model name (default FAIR)")
    parser.add_argument("--dataset", "-d", type=str, default=None, help="dataset (default ml-100k)")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated YAML files")
    args, _ = parser.parse_known_args()

    config_files = args.config_files.strip().split(" ") if args.config_files else []
    if args.model is None and args.dataset is None:
        config_files.insert(0, os.path.join(get_properties_dir(), "quick_start.yaml"))
    run_recbole_fair(
        model=args.model or "FAIR",
        dataset=args.dataset or "ml-100k",
        config_file_list=config_files or None,
    )
