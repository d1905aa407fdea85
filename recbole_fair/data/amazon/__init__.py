r"""The steps of :mod:`recbole_fair.data.prepare_amazon` (raw Amazon review downloads -> RecBole
atomic files), one module each, in the order they run:

* :mod:`~recbole_fair.data.amazon.files`: gzipped or plain JSON / Python-literal lines, the
  2014 / 2018 format detection;
* :mod:`~recbole_fair.data.amazon.text`: cleaning of ids, text, numbers, prices and categories;
* :mod:`~recbole_fair.data.amazon.reviews`: reviews -> interaction arrays, deduplication,
  iterated k-core;
* :mod:`~recbole_fair.data.amazon.meta`: the metadata rows of the items kept;
* :mod:`~recbole_fair.data.amazon.write`: the ``.inter`` / ``.item`` files, the statistics and
  the printed summary.
"""
