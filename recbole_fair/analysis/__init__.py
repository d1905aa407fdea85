r"""Analyses of trained models and finished leaderboards; each starts from a checkpoint
(:mod:`recbole_fair.checkpoint`) or a leaderboard's results file.

* :mod:`~recbole_fair.analysis.attention`: attention maps and attention-focus numbers of FAIR/RPG
  (the ``recbole-fair attention`` command);
* :mod:`~recbole_fair.analysis.user_buckets`: per-user NDCG@10 of leaderboard rows by user bucket;
* :mod:`~recbole_fair.analysis.popularity`: popularity bias and coverage of top-k lists;
* :mod:`~recbole_fair.analysis.score_calibration`: sweep of the prior-correction weight;
* :mod:`~recbole_fair.analysis.nrt`: how active FAIR's NRT triplet loss is;
* :mod:`~recbole_fair.analysis.report`: Markdown and JSON output of the scripts.

The scripts of ``benchmarks/`` (``per_user_buckets.py``, ``rec_popularity.py``,
``score_calibration.py``, ``diag_nrt.py``) print and save these analyses.
"""
