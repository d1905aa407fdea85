r"""A synthetic dataset with short item texts and many shared semantic IDs, for checking that a
training recipe learns on data it was never tuned on (the "Reproduce FAIR" issue).

Items have a short text only (a name ``<brand> <adjective> <noun>`` and a category path), drawn
from small vocabularies, so many items have near-identical or identical texts and so identical
codes. Users follow a hidden structure the texts only partly reveal: each user prefers a few
sub-categories and brands; the next item is, with the given probabilities, from the previous
item's sub-category, the previous item's brand, the user's preferred sub-categories, or the
catalogue's popularity. A sequential recommender can learn this; a popularity ranking can not.

    python benchmarks/make_short_text_dataset.py --out_dir saved/data --name ShortText
    python benchmarks/make_short_text_dataset.py --out_dir saved/data --name ShortTextShared \
        --n_brands 25                                   # ~8% of items share their text
    python run_recbole_fair.py --model=FAIR --dataset=ShortText --data_path=saved/data \
        --config_files=benchmarks/short_text.yaml

writes ``<out_dir>/<name>/<name>.inter`` and ``<name>.item`` (RecBole atomic files: user_id,
item_id, timestamp; item_id, title, categories) and prints their sizes and the share of items
whose text is shared with another item.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

ADJECTIVES = "compact deluxe classic basic premium mini large soft bright quick".split()
NOUNS_PER_SUBCATEGORY = 4


def build(
    n_items: int, n_users: int, mean_length: float, seed: int, n_brands: int | None = None
) -> tuple[list, list]:
    r"""(items, interactions): items as (item_id, title, categories), interactions as
    (user_id, item_id, timestamp), every user with at least 5 interactions. ``n_brands``
    (default ``max(20, n_items // 40)``): fewer brands, more items with the same text."""
    rng = np.random.default_rng(seed)
    n_top, n_sub = 12, 5
    n_brands = n_brands or max(20, n_items // 40)
    n_subcategories = n_top * n_sub
    subcategory = rng.integers(0, n_subcategories, n_items)
    brand = rng.integers(0, n_brands, n_items)
    noun = rng.integers(0, NOUNS_PER_SUBCATEGORY, n_items)
    adjective = rng.integers(0, len(ADJECTIVES), n_items)
    items = []
    for i in range(n_items):
        sub = int(subcategory[i])
        title = f"brand{brand[i]} {ADJECTIVES[adjective[i]]} thing{sub}x{noun[i]}"
        categories = f"Store, Top{sub // n_sub}, Sub{sub}"
        items.append((i, title, categories))
    # a long tail, not a few hits: popularity alone must not rank well
    popularity = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.6
    popularity /= popularity.sum()
    by_sub = [np.flatnonzero(subcategory == s) for s in range(n_subcategories)]
    by_brand = [np.flatnonzero(brand == b) for b in range(n_brands)]

    def draw(pool: np.ndarray) -> int:
        if len(pool) == 0:
            return int(rng.choice(n_items, p=popularity))
        weights = popularity[pool] / popularity[pool].sum()
        return int(rng.choice(pool, p=weights))

    interactions = []
    for user in range(n_users):
        liked = rng.choice(n_subcategories, size=2, replace=False)
        length = 5 + int(rng.geometric(1.0 / max(mean_length - 4, 1.0))) - 1
        item = draw(by_sub[int(rng.choice(liked))])
        seen = [item]
        while len(seen) < length:
            u = rng.random()
            if u < 0.45:
                item = draw(by_sub[int(subcategory[item])])
            elif u < 0.65:
                item = draw(by_brand[int(brand[item])])
            elif u < 0.85:
                item = draw(by_sub[int(rng.choice(liked))])
            else:
                item = int(rng.choice(n_items, p=popularity))
            if item != seen[-1]:
                seen.append(item)
        interactions += [(user, it, t) for t, it in enumerate(seen)]
    return items, interactions


def write(out_dir: str, name: str, items: list, interactions: list) -> tuple[str, str]:
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    inter_path = os.path.join(folder, f"{name}.inter")
    item_path = os.path.join(folder, f"{name}.item")
    with open(inter_path, "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        f.writelines(f"{u}\t{i}\t{t}\n" for u, i, t in interactions)
    with open(item_path, "w", encoding="utf-8") as f:
        f.write("item_id:token\ttitle:token_seq\tcategories:token_seq\n")
        f.writelines(f"{i}\t{title}\t{cats}\n" for i, title, cats in items)
    return inter_path, item_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out_dir", required=True, help="folder receiving <name>/")
    parser.add_argument("--name", default="ShortText", help="dataset name (default ShortText)")
    parser.add_argument("--n_items", type=int, default=5000)
    parser.add_argument("--n_users", type=int, default=8000)
    parser.add_argument("--mean_length", type=float, default=10.0, help="mean interactions/user")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument(
        "--n_brands",
        type=int,
        default=None,
        help="brands in the names (default max(20, n_items // 40): 1.4%% of 5,000 items share "
        "their text; 25: about 8%%, as many shared semantic IDs as the held-out set of the "
        "'Reproduce FAIR' issue)",
    )
    args = parser.parse_args(argv)
    items, interactions = build(
        args.n_items, args.n_users, args.mean_length, args.seed, args.n_brands
    )
    inter_path, item_path = write(args.out_dir, args.name, items, interactions)
    texts = [f"{title} {cats}" for _, title, cats in items]
    _, counts = np.unique(texts, return_counts=True)
    shared = counts[counts > 1].sum() / len(texts)
    print(
        f"{inter_path}: {len(interactions)} interactions of {args.n_users} users\n"
        f"{item_path}: {len(items)} items, {shared:.1%} of them share their text with another"
    )


if __name__ == "__main__":
    main()
