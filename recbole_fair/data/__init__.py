"""RecBole dataset classes of recbole-fair, found by name ``{Model}Dataset``."""

# Each dataset module adds one re-export line below.
from recbole_fair.data.action_dataset import (
    ActionSequenceDataset,
    AttnLFADataset,
    AttnMVPDataset,
    InterleavedDataset,
)
from recbole_fair.data.dataset import FAIRDataset, SemanticIDDataset
from recbole_fair.data.dataset import FAIRDataset as RPGDataset  # RPG: the same OPQ semantic IDs
from recbole_fair.data.tiger_dataset import TIGERDataset
