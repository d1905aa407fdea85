"""The shipped Amazon datasets through the whole semantic-ID pipeline, on a small sample.

A sample of each dataset's users, written in the same atomic-file format, is loaded by FAIR's
dataset: file checks, item texts from the dataset's own text fields, the packaged text encoder,
PCA and OPQ. Skipped when ``../shared/datasets`` is absent (CI has it beside the checkout).
"""

import numpy as np
import pandas as pd
import pytest

from recbole_fair.config import Config
from recbole_fair.utils import create_dataset

N_USERS = 60


def _sample(shared, name, out):
    r"""The first ``N_USERS`` users' interactions and their items' rows, in the same format."""
    src = shared / name
    inter = pd.read_csv(src / f"{name}.inter", sep="\t", dtype=str)
    users = inter.iloc[:, 0].drop_duplicates().iloc[:N_USERS]
    inter = inter[inter.iloc[:, 0].isin(users)]
    items = pd.read_csv(src / f"{name}.item", sep="\t", dtype=str, keep_default_na=False)
    items = items[items.iloc[:, 0].isin(set(inter.iloc[:, 1]))]
    folder = out / name
    folder.mkdir(parents=True)
    inter.to_csv(folder / f"{name}.inter", sep="\t", index=False)
    items.to_csv(folder / f"{name}.item", sep="\t", index=False)
    return len(inter), len(items)


@pytest.mark.parametrize("name", ["Amazon_Beauty", "Amazon_Scientific"])
def test_a_sample_of_the_shipped_dataset_gets_semantic_ids(
    shared_datasets, tmp_path, single_thread, name
):
    n_inter, n_items = _sample(shared_datasets, name, tmp_path / "data")
    config = Config(
        model="FAIR",
        dataset=name,
        config_dict={
            "data_path": str(tmp_path / "data"),
            "sid_cache_dir": str(tmp_path / "sid"),
            "n_codes": 4,
            "codebook_size": 16,
            "sid_pca_dim": 32,
            "hidden_size": 32,
            "inner_size": 64,
            "show_progress": False,
            # a sample of a 5-core dataset is not 5-core: the presets' filters would empty it
            "user_inter_num_interval": "[0,inf)",
            "item_inter_num_interval": "[0,inf)",
        },
    )
    dataset = create_dataset(config)
    # every interaction of the sample read and kept (no data problem, no filter)
    drops = dataset.drop_report
    assert drops["rows_read"] == drops["rows_kept"] == n_inter and not drops["drops"]
    train, _, _ = dataset.build()  # the IDs are fitted on the training split's items
    report = train.semantic_id_report
    # every item of the sample has its semantic ID
    assert report["n_items"] == dataset.item_num - 1 == n_items
    assert report["items_without_text"] == 0
    assert report["text_fields"] and set(report["text_fields"]) <= {
        "title",
        "brand",
        "categories",
        "description",
    }
    assert report["embedding_dim"] == 384 and report["sid_pca_dim"] == 32
    assert report["items_without_item_row"] == 0
    codes = np.asarray(train.item_codes)
    assert codes.shape == (dataset.item_num, 4)
    assert codes[1:].min() >= 0 and codes[1:].max() < 16
    # the text carries information: far fewer collisions than one code tuple for all items
    assert report["collision_rate"] < 0.5
    assert len(report["codes_fingerprint"]) == 12
