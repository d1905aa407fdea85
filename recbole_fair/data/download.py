r"""recbole_fair.data.download
###########################

Opt-in fetch of RecBole's own processed copy of a dataset (``--download=True``), for users who
have not prepared the papers' split.

What RecBole hosts is **not** the split of the generative-recommendation papers: for Amazon it is
the full ratings file of a category (every user and item, no k-core filter), converted to atomic
files. After the download the dataset YAML's 5-core filter (``user_inter_num_interval`` /
``item_inter_num_interval``, iterated by RecBole until stable) applies, and the run logs the
resulting size next to the published split, so nobody mistakes one for the other. The papers'
split comes from the raw review downloads through :mod:`recbole_fair.data.prepare_amazon`.

RecBole 1.2.1's own download path cannot be used as it is: it looks datasets up by RecBole's
names (``amazon-beauty``), not ours (``Amazon_Beauty``), and it calls
``torch.distributed.barrier()`` even outside a process group. This module maps the names and
calls RecBole's download helpers itself.
"""

from __future__ import annotations

import json
import os
import time
from logging import getLogger
from typing import Any

import yaml

# our dataset name -> RecBole's name in recbole/properties/dataset/url.yaml
RECBOLE_NAMES = {
    "Amazon_Beauty": "amazon-beauty",
    "Amazon_Scientific": "amazon-industrial-scientific-18",
}

# what the papers use, for the comparison printed after a download (project benchmark notes)
PUBLISHED_SPLITS = {
    "Amazon_Beauty": "22,363 users, 12,101 items, 198,502 interactions "
    "(Amazon 2014 Beauty 5-core reviews, S3-Rec/P5/TIGER/RPG/FAIR)",
    "Amazon_Scientific": "the Amazon 2018 Industrial & Scientific 5-core reviews (RPG/FAIR)",
}

MARKER = "RECBOLE_DOWNLOAD.json"


def recbole_url(dataset: str) -> str | None:
    r"""RecBole's download URL for ``dataset`` (our name or RecBole's), or ``None``."""
    import recbole

    path = os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset", "url.yaml")
    with open(path, encoding="utf-8") as f:
        urls = yaml.safe_load(f)
    for name in (dataset, RECBOLE_NAMES.get(dataset), dataset.lower().replace("_", "-")):
        if name and name in urls:
            return urls[name]
    return None


def _fetch(url: str, folder: str) -> str:
    r"""Download and unpack RecBole's zip into ``folder``; the zip's base name."""
    from recbole.utils.url import decide_download, download_url, extract_zip

    if not decide_download(url):
        raise RuntimeError(f"download of {url} declined")
    path = download_url(url, folder)
    extract_zip(path, folder)
    os.unlink(path)
    return os.path.splitext(os.path.basename(path))[0]


def download_dataset(config: Any) -> str:
    r"""Fetch RecBole's copy of ``config['dataset']`` into ``config['data_path']``.

    The atomic files are renamed to the dataset's name and a marker file records the source.

    Returns:
        str: the URL fetched.

    Raises:
        FileNotFoundError: RecBole hosts no dataset of that name, or the download failed (the
            message says how to get the data another way).
    """
    from recbole.utils.url import rename_atomic_files

    dataset, folder = config["dataset"], config["data_path"]
    url = recbole_url(dataset)
    if url is None:
        raise FileNotFoundError(
            f"--download=True: RecBole hosts no dataset named [{dataset}] (see "
            f"recbole/properties/dataset/url.yaml). Prepare the atomic files yourself "
            f"(python -m recbole_fair.data.prepare_amazon for Amazon review downloads) and "
            f"point --data_path at their parent folder."
        )
    logger = getLogger()
    published = PUBLISHED_SPLITS.get(dataset, "the papers' 5-core review split")
    logger.warning(
        f"Downloading RecBole's copy of [{dataset}] from {url} into {folder}. It is NOT the "
        f"split of the published results ({published}): "
        f"the dataset YAML's 5-core filter is applied to it and its size is logged after loading."
    )
    os.makedirs(folder, exist_ok=True)
    try:
        basename = _fetch(url, folder)
    except Exception as err:  # network errors come in many types
        raise FileNotFoundError(
            f"Downloading [{dataset}] from {url} failed ({type(err).__name__}: {err}). Without "
            f"network access prepare the atomic files with python -m "
            f"recbole_fair.data.prepare_amazon and pass --data_path."
        ) from err
    if basename != dataset:
        rename_atomic_files(folder, basename, dataset)
    with open(os.path.join(folder, MARKER), "w", encoding="utf-8") as f:
        json.dump({"dataset": dataset, "url": url, "downloaded": time.ctime()}, f, indent=2)
    return url


def report_downloaded(config: Any, dataset: Any) -> dict | None:
    r"""For a dataset that came from :func:`download_dataset`: log (warning) and return its
    size after filtering, next to the published split; ``None`` for any other dataset."""
    marker = os.path.join(config["data_path"], MARKER)
    if not os.path.isfile(marker):
        return None
    with open(marker, encoding="utf-8") as f:
        source = json.load(f)
    stats = {
        "source": source.get("url"),
        "users": int(dataset.user_num - 1),
        "items": int(dataset.item_num - 1),
        "interactions": int(dataset.inter_num),
        "user_inter_num_interval": config["user_inter_num_interval"],
        "item_inter_num_interval": config["item_inter_num_interval"],
        "published_split": PUBLISHED_SPLITS.get(config["dataset"]),
    }
    getLogger().warning(
        f"[{config['dataset']}] is RecBole's download ({stats['source']}), filtered by "
        f"user_inter_num_interval={stats['user_inter_num_interval']}, "
        f"item_inter_num_interval={stats['item_inter_num_interval']}: {stats['users']:,} users, "
        f"{stats['items']:,} items, {stats['interactions']:,} interactions. Published results use "
        f"{stats['published_split'] or 'a different split'}; do not compare the two."
    )
    return stats
