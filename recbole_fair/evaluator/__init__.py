"""Extra evaluation metrics registered into RecBole's evaluator."""
