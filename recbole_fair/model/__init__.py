"""Models of recbole-fair, looked up by name before RecBole's own (see ``recbole_fair.utils``)."""
