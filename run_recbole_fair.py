r"""Train and evaluate a recbole-fair or RecBole model: ``python run_recbole_fair.py --model=FAIR``.

The same as ``recbole-fair run`` (flags, leaderboards, ``--nproc``, exit status):
:mod:`recbole_fair.cli.run`.
"""

import sys

from recbole_fair.cli.run import main

if __name__ == "__main__":
    sys.exit(main())
