#!/usr/bin/env bash
# Prepare what a GPU run on the lent device machine needs (docs/notes/investigation.md, section 0e).
# Run here, on the CPU machine, from the repository root:
#
#   bash benchmarks/gpu/prepare_bundle.sh          # -> .whl/, .devrun/datasets/, .devrun/sid/
#
# then, through the device tool, with carry [".whl", ".devrun/datasets", ".devrun/sid"]:
#
#   bash benchmarks/gpu/device_run.sh              # RUNS="fair512 ..." picks the runs
#
# The device machine has torch (CUDA), numpy 2, scipy, scikit-learn and sentence-transformers but
# no recbole, no faiss and no network, and one call carries at most 64 MiB. So:
# * wheels: RecBole 1.2.1 and what it imports that the machine lacks, plus pandas 2 (RecBole's
#   chained fillna is a no-op under pandas 3, recbole_fair/compat.py). Not numpy 1.26: the
#   machine's scipy needs numpy 2, which recbole_fair/compat.py handles. Not faiss (19 MB): see
#   the next point.
# * the semantic-ID cache is built here (text encoder + faiss OPQ on the CPU) and carried,
#   re-saved compressed; benchmarks/gpu/faiss.py stands in for faiss there and fails if called.
# * the dataset's atomic files are copied in (../shared does not travel).
# Environment: DATASET (default Amazon_Beauty), DATA_PATH (default ../shared/datasets),
# SID_CACHE (an existing cache folder to reuse, default benchmarks/results/sid_cache),
# PYTHON (default python).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATASET=${DATASET:-Amazon_Beauty}
DATA_PATH=$(realpath "${DATA_PATH:-../shared/datasets}")
SID_CACHE=$(realpath -m "${SID_CACHE:-benchmarks/results/sid_cache}")
PYTHON=${PYTHON:-python}
[[ -d $DATA_PATH/$DATASET ]] || { echo "no $DATA_PATH/$DATASET: set DATA_PATH" >&2; exit 2; }
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
grep -qx '/.devrun/' .git/info/exclude 2>/dev/null || echo '/.devrun/' >>.git/info/exclude

# wheels for the device's Python (3.12, x86-64); --no-deps: each needed one is named
rm -rf .whl && mkdir -p .whl
$PYTHON -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    recbole==1.2.1 pandas==2.3.3 pytz tzdata colorlog==4.7.2 texttable==1.7.2 \
    thop==0.1.1.post2209072238

# the dataset
rm -rf ".devrun/datasets/$DATASET" && mkdir -p .devrun/datasets .devrun/sid
cp -r "$DATA_PATH/$DATASET" .devrun/datasets/

# FAIR's semantic-ID cache: build (or reuse) it here, then keep only the sid-*.npz it used,
# compressed (np.load reads both forms; the checksum covers the arrays, not the file)
DATASET=$DATASET DATA_PATH=$DATA_PATH SID_CACHE=$SID_CACHE $PYTHON - <<'PY'
import os

import numpy as np

from recbole_fair.config import Config
from recbole_fair.utils import create_dataset

cfg = Config(
    model="FAIR",
    dataset=os.environ["DATASET"],
    config_dict={"data_path": os.environ["DATA_PATH"], "sid_cache_dir": os.environ["SID_CACHE"],
                 "device": "cpu"},
)
dataset = create_dataset(cfg)
dataset.build()
path = dataset.semantic_id_cache_path
with np.load(path) as data:
    arrays = {name: data[name] for name in data.files}
np.savez_compressed(os.path.join(".devrun", "sid", os.path.basename(path)), **arrays)
print(f"semantic-ID cache {os.path.basename(path)} -> .devrun/sid/")
PY
du -sh .whl .devrun/datasets .devrun/sid
