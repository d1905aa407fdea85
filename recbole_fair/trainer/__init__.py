"""Trainers of recbole-fair, found by name ``{Model}Trainer`` before RecBole's."""

# Each trainer module adds one re-export line below.
from recbole_fair.trainer.semantic_trainer import (
    FAIRTrainer,
    RPGTrainer,
    SemanticIDTrainer,
    TIGERTrainer,
)
from recbole_fair.trainer.sync_free import SyncFreeTrainer
