#!/usr/bin/env bash
# Prepare what a GPU run on the lent device machine needs (docs/notes/investigation.md, section 0e).
# Run here, on the CPU machine, from the repository root:
#
#   bash benchmarks/gpu/prepare_bundle.sh          # -> .whl/, .devrun/datasets/, .devrun/sid/
#
# then, through the device tool, with carry [".whl", ".devrun/datasets", ".devrun/sid"]:
#
#   RUNS=suite bash benchmarks/gpu/device_run.sh   # the one-window suite (benchmarks/gpu/README.md)
#   bash benchmarks/gpu/device_run.sh              # RUNS="fair512 ..." picks named runs
#
# The device machine has torch (CUDA), numpy 2, scipy, scikit-learn and sentence-transformers but
# no recbole, no faiss and no network, and one call carries at most 64 MiB. So:
# * wheels: RecBole 1.2.1 and what it imports that the machine lacks, plus pandas 2 (RecBole's
#   chained fillna is a no-op under pandas 3, recbole_fair/compat.py). Not numpy 1.26: the
#   machine's scipy needs numpy 2, which recbole_fair/compat.py handles. Not faiss (19 MB): see
#   the next point.
# * the semantic-ID caches are built here (text encoder, faiss OPQ for FAIR/RPG, the RQ-VAE with
#   its faiss k-means for TIGER, on the CPU: benchmarks/gpu/build_caches.py) and carried,
#   re-saved compressed; benchmarks/gpu/faiss.py stands in for faiss there and fails if called.
# * the dataset's atomic files are copied in (../shared does not travel).
# Environment: DATASET (default Amazon_Beauty), DATA_PATH (default ../shared/datasets),
# SID_CACHE (an existing cache folder to reuse, default benchmarks/results/sid_cache),
# SUITE_CONFIG (default docs/leaderboards/gpu_suite.yaml), SUITE_MODELS (default
# FAIR,RPG,TIGER,SASRec), PYTHON (default python).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATASET=${DATASET:-Amazon_Beauty}
DATA_PATH=$(realpath "${DATA_PATH:-../shared/datasets}")
SID_CACHE=$(realpath -m "${SID_CACHE:-benchmarks/results/sid_cache}")
PYTHON=${PYTHON:-python}
SUITE_CONFIG=${SUITE_CONFIG:-docs/leaderboards/gpu_suite.yaml}
SUITE_MODELS=${SUITE_MODELS:-FAIR,RPG,TIGER,SASRec}
[[ -d $DATA_PATH/$DATASET ]] || { echo "no $DATA_PATH/$DATASET: set DATA_PATH" >&2; exit 2; }
# .whl/ and .devrun/ are in .gitignore: they travel only as the device call's carry

# wheels for the device's Python (3.12, x86-64); --no-deps: each needed one is named
rm -rf .whl && mkdir -p .whl
$PYTHON -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    recbole==1.2.1 pandas==2.3.3 pytz tzdata colorlog==4.7.2 texttable==1.7.2 \
    thop==0.1.1.post2209072238

# the dataset
rm -rf ".devrun/datasets/$DATASET" && mkdir -p .devrun/datasets
cp -r "$DATA_PATH/$DATASET" .devrun/datasets/

# The semantic-ID caches of the suite's models (docs/leaderboards/gpu_suite.yaml): FAIR/RPG's
# OPQ codes (one cache, also that of the older named runs) and TIGER's RQ-VAE codes, built (or
# reused) here on the CPU, then copied compressed (np.load reads both forms; the checksum covers
# the arrays, not the file)
rm -rf .devrun/sid && mkdir -p .devrun/sid
$PYTHON benchmarks/gpu/build_caches.py --dataset="$DATASET" --data_path="$DATA_PATH" \
    --sid_cache_dir="$SID_CACHE" --out=.devrun/sid --model_config="$SUITE_CONFIG" \
    --models="$SUITE_MODELS"
du -sh .whl .devrun/datasets .devrun/sid
# the device tool carries at most 64 MiB in all (the three folders plus the working tree)
total=$(du -cb .whl .devrun/datasets .devrun/sid | tail -1 | cut -f1)
tree=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
echo "bundle $((total / 1048576)) MiB + working tree $((tree / 1048576)) MiB (limit 64 MiB)"
((total + tree < 64 * 1048576)) || {
    echo "over the device tool's 64 MiB: drop something" >&2
    exit 3
}
