r"""Synthetic catalogues for ``benchmarks/bench_scale.py``: item texts with structure, interactions
with popularity skew, written as RecBole atomic files; and the stand-in text encoder.

Items (``<name>.item``: ``item_id``, ``title``, ``brand``, ``categories``, ``description``):

* a category path ``<top> <sub>``: ``max(40, min(2000, n // 500))`` sub-categories, each under
  one of 24 top categories, the sub-category of an item drawn Zipf-like (exponent 1.0);
* a brand drawn Zipf-like (exponent 1.1) from ``max(50, min(20000, n // 100))`` brands;
* a title ``<brand> <style> <colour> <material> <noun> <size> <series number>``: the attribute
  words drawn Zipf-like (exponent 1.2) from small English vocabularies, the noun one of the three
  nouns of the item's sub-category;
* a description of 12-20 words drawn Zipf-like (exponent 1.1) from 4,096 made-up words, in an
  order of preference that is the sub-category's own (so the words say which sub-category).

So items of one sub-category and brand share most of their words, and a quantizer has groups to
find. Interactions (``<name>.inter``: ``user_id``, ``item_id``, ``timestamp``): ``users_per_item
* n`` users, each with ``5 + floor(Lomax(1.6) * scale)`` interactions (mean ``mean_length``,
heavy-tailed: about one user in a thousand has more than 200), each interaction drawn from the
item popularity (Zipf-like over a random order of the items, exponent 0.9), 70% of them within
one of the user's two favourite sub-categories. Timestamps are positions in the user's sequence.

The stand-in encoder (:class:`StandInEncoder`) is a hashed bag of words: each word is hashed
(CRC-32) into one of ``2**16`` buckets, each bucket holds a fixed random vector, a text is the
normalised sum of its words' vectors. Texts sharing words get similar vectors, as with a real
encoder, at a cost that does not matter next to the quantizer's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib

import numpy as np

STYLES = (
    "classic modern compact deluxe premium basic slim heavy soft light portable vintage "
    "elegant rugged smart quiet bright natural organic professional"
).split()
COLOURS = "black white silver grey blue red green pink gold brown beige navy purple orange".split()
MATERIALS = "cotton steel wood glass plastic leather ceramic bamboo silk wool aluminium".split()
SIZES = "small medium large xl mini travel family king".split()
N_TOP_CATEGORIES = 24
DESCRIPTION_WORDS = 4096
TEXT_FIELDS = ["title", "brand", "categories", "description"]
FAVOURITE_SHARE = 0.7
LENGTH_SHAPE = 1.6


@dataclasses.dataclass(frozen=True)
class CatalogueSpec:
    r"""What decides a synthetic catalogue (also its stamp: a folder with another stamp is
    rewritten)."""

    n_items: int
    users_per_item: float = 1.0
    mean_length: float = 10.0
    seed: int = 2020


def made_up_words(n: int, rng: np.random.Generator) -> list[str]:
    r"""``n`` distinct pronounceable words of 2-4 syllables."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: dict[str, None] = {}
    while len(words) < n:
        k = int(rng.integers(2, 5))
        words["".join(syllables[i] for i in rng.integers(0, len(syllables), k))] = None
    return list(words)


def zipf_draw(rng: np.random.Generator, n_values: int, exponent: float, size: int) -> np.ndarray:
    r"""``size`` ranks in ``[0, n_values)`` with probability proportional to
    ``(rank + 1) ** -exponent``."""
    weights = np.arange(1, n_values + 1, dtype=np.float64) ** -exponent
    cum = np.cumsum(weights)
    return np.searchsorted(cum, rng.random(size) * cum[-1], side="right").clip(0, n_values - 1)


def _item_columns(spec: CatalogueSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = spec.n_items
    n_sub = max(40, min(2000, n // 500))
    n_brands = max(50, min(20000, n // 100))
    return {
        "sub": zipf_draw(rng, n_sub, 1.0, n),
        "brand": zipf_draw(rng, n_brands, 1.1, n),
        "style": zipf_draw(rng, len(STYLES), 1.2, n),
        "colour": zipf_draw(rng, len(COLOURS), 1.2, n),
        "material": zipf_draw(rng, len(MATERIALS), 1.2, n),
        "size": zipf_draw(rng, len(SIZES), 1.2, n),
        "noun": rng.integers(0, 3, n),
        "series": rng.integers(100, 10000, n),
        "desc_length": rng.integers(12, 21, n),
        "n_sub": np.array(n_sub),
        "n_brands": np.array(n_brands),
    }


def item_texts(spec: CatalogueSpec) -> tuple[list[tuple[str, str, str, str]], np.ndarray]:
    r"""Per item ``(title, brand, categories, description)``, and each item's sub-category."""
    rng = np.random.default_rng(spec.seed)
    col = _item_columns(spec, rng)
    n_sub, n_brands = int(col["n_sub"]), int(col["n_brands"])
    vocab = made_up_words(DESCRIPTION_WORDS + n_brands + 4 * n_sub + N_TOP_CATEGORIES, rng)
    desc_vocab, vocab = vocab[:DESCRIPTION_WORDS], vocab[DESCRIPTION_WORDS:]
    brands, vocab = vocab[:n_brands], vocab[n_brands:]
    nouns, vocab = vocab[: 3 * n_sub], vocab[3 * n_sub :]
    subs, tops = vocab[:n_sub], [w.capitalize() for w in vocab[n_sub:]]
    # each sub-category prefers the description words in its own order: rank r -> word
    # (r * mult + shift) mod 4096 with an odd mult (a bijection)
    mult = 2 * rng.integers(0, DESCRIPTION_WORDS // 2, n_sub) + 1
    shift = rng.integers(0, DESCRIPTION_WORDS, n_sub)
    ranks = zipf_draw(rng, DESCRIPTION_WORDS, 1.1, int(col["desc_length"].sum()))
    owner = np.repeat(col["sub"], col["desc_length"])
    word_ids = (ranks * mult[owner] + shift[owner]) % DESCRIPTION_WORDS
    ends = np.cumsum(col["desc_length"])
    texts = []
    for i in range(spec.n_items):
        sub, brand = int(col["sub"][i]), brands[col["brand"][i]]
        title = (
            f"{brand} {STYLES[col['style'][i]]} {COLOURS[col['colour'][i]]} "
            f"{MATERIALS[col['material'][i]]} {nouns[3 * sub + col['noun'][i]]} "
            f"{SIZES[col['size'][i]]} {col['series'][i]}"
        )
        categories = f"{tops[sub % N_TOP_CATEGORIES]} {subs[sub]}"
        words = word_ids[ends[i] - col["desc_length"][i] : ends[i]]
        texts.append((title, brand, categories, " ".join(desc_vocab[w] for w in words)))
    return texts, col["sub"]


def user_lengths(spec: CatalogueSpec, n_users: int, rng: np.random.Generator) -> np.ndarray:
    r"""Interactions per user: ``5 + floor(Lomax(1.6) * scale)``, capped at 2,000, with the
    scale giving a mean of about ``mean_length``."""
    scale = max(spec.mean_length - 4.5, 0.1) * (LENGTH_SHAPE - 1.0)
    return (5 + np.floor(rng.pareto(LENGTH_SHAPE, n_users) * scale)).astype(np.int64).clip(5, 2000)


def interactions(
    spec: CatalogueSpec, item_sub: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""``(user, item, timestamp)`` arrays (see the module docstring)."""
    rng = np.random.default_rng(spec.seed + 1)
    n = spec.n_items
    n_users = max(1, round(spec.users_per_item * n))
    lengths = user_lengths(spec, n_users, rng)
    user = np.repeat(np.arange(n_users), lengths)
    start = np.cumsum(lengths) - lengths
    timestamp = np.arange(len(user)) - np.repeat(start, lengths)
    popularity = (1.0 + rng.permutation(n)) ** -0.9
    order = np.lexsort((np.arange(n), item_sub))  # items grouped by sub-category
    cum = np.cumsum(popularity[order])
    n_sub = int(item_sub.max()) + 1
    sub_end = np.searchsorted(item_sub[order], np.arange(n_sub), side="right")
    sub_hi = np.where(sub_end > 0, cum[np.maximum(sub_end - 1, 0)], 0.0)
    sub_lo = np.r_[0.0, sub_hi[:-1]]
    # a user's two favourite sub-categories, drawn by how many items they hold
    sub_weight = np.bincount(item_sub, minlength=n_sub).astype(np.float64)
    favourites = rng.choice(n_sub, size=(n_users, 2), p=sub_weight / sub_weight.sum())
    chosen = favourites[user, rng.integers(0, 2, len(user))]
    within = rng.random(len(user)) < FAVOURITE_SHARE
    lo = np.where(within, sub_lo[chosen], 0.0)
    hi = np.where(within, sub_hi[chosen], cum[-1])
    position = np.searchsorted(cum, lo + rng.random(len(user)) * (hi - lo), side="right")
    item = order[position.clip(0, n - 1)]
    return user, item, timestamp


def _stamp_path(folder: str) -> str:
    return os.path.join(folder, "catalogue.json")


def write_catalogue(folder: str, name: str, spec: CatalogueSpec) -> dict:
    r"""Write ``<folder>/<name>.item`` and ``<name>.inter`` unless a catalogue of the same spec is
    there already; return its statistics (also stored in ``<folder>/catalogue.json``)."""
    stamp = _stamp_path(folder)
    if os.path.isfile(stamp):
        with open(stamp, encoding="utf-8") as f:
            stats = json.load(f)
        if stats.get("spec") == dataclasses.asdict(spec):
            return {**stats, "reused": True}
    import pandas as pd

    os.makedirs(folder, exist_ok=True)
    texts, item_sub = item_texts(spec)
    items = pd.DataFrame(texts, columns=TEXT_FIELDS)
    items.insert(0, "item_id", [f"i{i}" for i in range(spec.n_items)])
    header = ["item_id:token", "title:token_seq", "brand:token"]
    header += ["categories:token_seq", "description:token_seq"]
    items.to_csv(
        os.path.join(folder, f"{name}.item"), sep="\t", index=False, header=header, quoting=3
    )
    user, item, timestamp = interactions(spec, item_sub)
    inter = pd.DataFrame({"u": np.char.add("u", user.astype(str)), "i": item, "t": timestamp})
    inter["i"] = np.char.add("i", item.astype(str))
    inter.to_csv(
        os.path.join(folder, f"{name}.inter"),
        sep="\t",
        index=False,
        header=["user_id:token", "item_id:token", "timestamp:float"],
    )
    lengths = np.bincount(user)
    stats = {
        "spec": dataclasses.asdict(spec),
        "n_users": int(len(lengths)),
        "n_interactions": int(len(user)),
        "items_with_interactions": int(len(np.unique(item))),
        "length_mean": float(lengths.mean()),
        "length_p50": float(np.percentile(lengths, 50)),
        "length_p99": float(np.percentile(lengths, 99)),
        "length_max": int(lengths.max()),
        "users_longer_than_200": int((lengths > 200).sum()),
        "top_item_share": float(np.bincount(item).max() / len(item)),
        "distinct_texts": int(len({t for t in texts})),
    }
    with open(stamp, "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=1)
    return {**stats, "reused": False}


class StandInEncoder:
    r"""Hashed bag-of-words text encoder: ``list[str] -> float32 [n, dim]`` of unit rows.

    Args:
        dim: embedding dimension (384, that of the default all-MiniLM-L6-v2).
        buckets: hash buckets, each a fixed random vector.
        seed: seed of the bucket vectors.
    """

    name = "stand-in:hashed-bag-of-words"

    def __init__(self, dim: int = 384, buckets: int = 1 << 16, seed: int = 0) -> None:
        self.dim, self.buckets, self.seed = int(dim), int(buckets), int(seed)
        self._table: np.ndarray | None = None

    def table(self) -> np.ndarray:
        if self._table is None:
            rng = np.random.default_rng(self.seed)
            self._table = rng.standard_normal((self.buckets, self.dim), dtype=np.float32)
        return self._table

    def __call__(self, texts: list[str], chunk: int = 20000) -> np.ndarray:
        from scipy.sparse import csr_matrix

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for begin in range(0, len(texts), chunk):
            block = texts[begin : begin + chunk]
            words = [text.lower().split() for text in block]
            columns = [zlib.crc32(w.encode()) % self.buckets for ws in words for w in ws]
            pointers = np.cumsum([0] + [len(ws) for ws in words])
            ones = np.ones(len(columns), dtype=np.float32)
            counts = csr_matrix((ones, columns, pointers), shape=(len(block), self.buckets))
            out[begin : begin + len(block)] = counts @ self.table()  # [b, dim]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.where(norms > 0, norms, 1.0)
        return out
