r"""recbole-fair: generative recommendation with semantic IDs (FAIR) as a RecBole plugin."""

from recbole_fair import compat as _compat

_compat.apply()

__version__ = "0.1.0"
