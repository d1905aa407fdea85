"""Sequential recommenders: one module per model, named ``model_name.lower()``."""

# Each model module adds one re-export line below.
from recbole_fair.model.sequential_recommender.attnlfa import AttnLFA
from recbole_fair.model.sequential_recommender.attnmvp import AttnMVP
from recbole_fair.model.sequential_recommender.fair import FAIR
from recbole_fair.model.sequential_recommender.interleaved import Interleaved
from recbole_fair.model.sequential_recommender.rpg import RPG
from recbole_fair.model.sequential_recommender.tiger import TIGER
