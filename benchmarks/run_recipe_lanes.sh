#!/usr/bin/env bash
# FAIR's training recipe against its width (the "Reproduce FAIR" issue, step 1): validation
# curves of the paper's method (no recbole-fair extensions) on Amazon_Scientific at d = 128, 256
# and 512 (FFN 2d) and several peak learning rates, every run under the same epoch cap and
# schedule (linear warm-up for WARMUP epochs, cosine decay to 0 at the cap), seed 2020.
#
#   bash benchmarks/run_recipe_lanes.sh a        # lane a: d=512 at lr 0.0025, then 0.001
#   bash benchmarks/run_recipe_lanes.sh b        # lane b: d=128 lr 0.01, d=512 lr 0.01, d=256 lr 0.005
#   bash benchmarks/run_recipe_lanes.sh robust   # the d=512 recipe on short texts and ml-100k
#   bash benchmarks/run_recipe_lanes.sh robust-shared  # ... on short texts with ~8% of items
#                                                # sharing their text (ShortTextShared)
#   bash benchmarks/run_recipe_lanes.sh robust-beauty  # ... FAIR alone on Amazon_Beauty (its
#                                                # popularity and SASRec-CE rows: docs/leaderboards)
#   bash benchmarks/run_recipe_lanes.sh merge    # -> docs/leaderboards/Amazon_Scientific-recipe/
#
# Each run is a one-cell leaderboard in a folder of its own ($OUT/recipe-e<EPOCHS>-d<D>-lr<LR>), started
# with --resume: re-running a lane skips finished runs and continues an interrupted one from its
# last epoch. `touch $OUT/recipe-e<EPOCHS>-d<D>-lr<LR>/STOP` stops a run after its current epoch. The
# per-epoch validation scores and training losses are in each record's costs (valid_scores,
# train_losses). Lanes run single-threaded (one per core).
#
# Environment: DATA_PATH (default ../shared/datasets), SID_CACHE (default
# benchmarks/results/sid_cache), OUT (default leaderboards/recipe), EPOCHS (default 10), WARMUP
# (warm-up epochs, default 1), PYTHON (default python), THREADS (default 1). Paths are passed as
# given (keep them relative: they are recorded with each result).
set -euo pipefail
cd "$(dirname "$0")/.."

lane=${1:?usage: run_recipe_lanes.sh a|b|robust|robust-shared|robust-beauty|merge}
DATA_PATH=${DATA_PATH:-../shared/datasets}
SID_CACHE=${SID_CACHE:-benchmarks/results/sid_cache}
OUT=${OUT:-leaderboards/recipe}
EPOCHS=${EPOCHS:-10}
WARMUP=${WARMUP:-1}
PYTHON=${PYTHON:-python}
THREADS=${THREADS:-1}
DATASET=Amazon_Scientific
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
TCMALLOC=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
if [[ -f $TCMALLOC && -z ${LD_PRELOAD:-} ]]; then export LD_PRELOAD=$TCMALLOC; fi

run() {  # width learning_rate
    local d=$1 lr=$2 status=0
    local dir=$OUT/recipe-e$EPOCHS-d$d-lr$lr
    mkdir -p "$dir"
    echo "== $(date -u +%FT%TZ) FAIR d=$d lr=$lr on $DATASET -> $dir (log: $dir.log)"
    $PYTHON run_recbole_fair.py --model=FAIR --dataset=$DATASET \
        --data_path="$DATA_PATH" --sid_cache_dir="$SID_CACHE" \
        --seeds=2020 --epochs="$EPOCHS" --hidden_size="$d" --inner_size=$((2 * d)) \
        --learning_rate="$lr" --warmup_steps=0 --warmup_epochs="$WARMUP" \
        --leaderboard_dir="$dir" --resume >>"$dir.log" 2>&1 || status=$?
    # 3: the cell failed (recorded, named at the end of the log): the lane goes on; 75 (a STOP
    # file) or any other failure (1: the command failed) ends it
    if ((status == 3)); then
        echo "   failed: see the end of $dir.log"
    elif ((status != 0)); then
        exit "$status"
    fi
}

case $lane in
a)
    run 512 0.0025
    run 512 0.001
    ;;
b)
    run 128 0.01
    run 512 0.01
    run 256 0.005
    ;;
robust | robust-shared | robust-beauty)
    # Does the recipe learn on data it was not tuned on? FAIR at d=512 with the width-scaled
    # learning rate, a popularity ranking and SASRec-CE, ROBUST_EPOCHS each (default 5), on the
    # synthetic short-text datasets (benchmarks/make_short_text_dataset.py, written to
    # SHORT_DATA, default saved/data: ShortText, 1.4% of items sharing their text, and
    # ShortTextShared, --n_brands 25, about 8%), on ml-100k and (FAIR alone) on Amazon_Beauty.
    short=${SHORT_DATA:-saved/data}
    [[ -s $short/ShortText/ShortText.inter ]] ||
        $PYTHON benchmarks/make_short_text_dataset.py --out_dir "$short"
    [[ -s $short/ShortTextShared/ShortTextShared.inter ]] ||
        $PYTHON benchmarks/make_short_text_dataset.py --out_dir "$short" \
            --name ShortTextShared --n_brands 25
    cap=${ROBUST_EPOCHS:-5}
    fair=(--hidden_size=512 --inner_size=1024 --learning_rate=0.0025 --warmup_steps=0
        --warmup_epochs="$WARMUP" "--sid_cache_dir=$SID_CACHE")
    datasets=(ShortText ml-100k) models=(Pop FAIR SASRec)
    [[ $lane == robust-shared ]] && datasets=(ShortTextShared)
    [[ $lane == robust-beauty ]] && datasets=(Amazon_Beauty) models=(FAIR)
    for dataset in "${datasets[@]}"; do
        data=()
        [[ $dataset == Amazon_* ]] && data=("--data_path=$DATA_PATH")
        [[ $dataset == ShortText* ]] &&
            data=("--data_path=$short" --config_files=benchmarks/short_text.yaml)
        for model in "${models[@]}"; do
            extra=()
            [[ $model == FAIR ]] && extra=("${fair[@]}")
            [[ $model == SASRec ]] && extra=(--loss_type=CE)
            dir=$OUT/robust-e$cap-$dataset-$model
            mkdir -p "$dir"
            echo "== $(date -u +%FT%TZ) $model on $dataset -> $dir (log: $dir.log)"
            $PYTHON run_recbole_fair.py --model="$model" --dataset="$dataset" "${data[@]}" \
                --seeds=2020 --epochs="$cap" "${extra[@]}" \
                --leaderboard_dir="$dir" --resume >>"$dir.log" 2>&1 || [[ $? == 3 ]]
        done
    done
    ;;
merge)
    files=()
    for f in "$OUT"/recipe-e"$EPOCHS"-*/results.jsonl; do
        [[ -s $f ]] && files+=("$f")
    done
    list=$(IFS=,; echo "${files[*]}")
    $PYTHON run_recbole_fair.py --leaderboard-only "$list" \
        --leaderboard_dir="docs/leaderboards/$DATASET-recipe-e$EPOCHS"
    ;;
*)
    echo "unknown lane '$lane': a, b, robust, robust-shared, robust-beauty or merge" >&2
    exit 2
    ;;
esac
