r"""``python -m recbole_fair.cli``: the ``recbole-fair`` command."""

import sys

from recbole_fair.cli import main

sys.exit(main())
