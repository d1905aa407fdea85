#!/usr/bin/env bash
# The 40-epoch CPU leaderboards of docs/leaderboards/ (issue #5), resumable across sessions.
#
# Two lanes, one per CPU core, each a chain of leaderboards on disjoint model lists; every
# leaderboard is started with --resume, so re-running a lane skips finished cells and continues
# an interrupted cell from its last epoch checkpoint. `merge` renders one leaderboard per dataset
# from both lanes' results (run it at any time: unfinished cells are simply not there yet).
#
#   bash benchmarks/run_cpu_leaderboards.sh gen     # FAIR, RPG        (lane 1)
#   bash benchmarks/run_cpu_leaderboards.sh seq     # SASRec, GRU4Rec, BERT4Rec (lane 2)
#   bash benchmarks/run_cpu_leaderboards.sh merge   # -> docs/leaderboards/<dataset>-e40/
#
# `merge` reads every $OUT/<dataset>-e<EPOCHS>-*/results.jsonl: a variant run in a folder of its
# own (e.g. leaderboards/Amazon_Beauty-e40-fair-item1, FAIR with --item_loss_weight=1.0) joins
# the dataset's leaderboard as a row labelled by its settings.
#
# Environment: DATA_PATH (folder holding Amazon_Beauty/ and Amazon_Scientific/, default
# ../shared/datasets), SID_CACHE (semantic-ID cache folder, default benchmarks/results/sid_cache),
# OUT (run folders, default leaderboards/), DOCS (committed leaderboards, default
# docs/leaderboards), EPOCHS (default 40), DATASETS (default
# "Amazon_Beauty Amazon_Scientific ml-100k"), PYTHON (default python), REFERENCE (`merge`: the
# model of the significance test, default SASRec when present), THREADS (torch threads per lane,
# default 1; THREADS=2 for a single lane alone on the machine, e.g. the last long cell).
# The command lines are part of each cell's config hash (what --resume matches): keep them. They
# hold absolute paths (--data_path, --sid_cache_dir): the committed results were run from the
# project's main checkout with its shared data folder, and a checkout elsewhere gets new hashes
# (its --resume re-runs those cells; `merge` then shows them as separate rows).
# A lane folder missing its results.jsonl (a new checkout) starts from the committed
# docs/leaderboards/<dataset>-e<EPOCHS>/results.jsonl: commit `merge`'s output to carry finished
# cells into the next session.
# `touch $OUT/<dataset>-e<EPOCHS>-<lane>/STOP` stops a lane after its current epoch (nothing
# trained is lost; the leaderboard exits with status 75, which ends the lane); re-run to continue.
# A leaderboard in which a cell failed exits with status 3: the lane goes on with the next dataset.
# Each lane runs single-threaded by default (OMP_NUM_THREADS=1): two lanes fill a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."

lane=${1:?usage: run_cpu_leaderboards.sh gen|seq|merge}
DATA_PATH=${DATA_PATH:-../shared/datasets}
SID_CACHE=${SID_CACHE:-benchmarks/results/sid_cache}
OUT=${OUT:-leaderboards}
DOCS=${DOCS:-docs/leaderboards}
EPOCHS=${EPOCHS:-40}
DATASETS=${DATASETS:-Amazon_Beauty Amazon_Scientific ml-100k}
PYTHON=${PYTHON:-python}
THREADS=${THREADS:-1}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
TCMALLOC=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
if [[ -f $TCMALLOC && -z ${LD_PRELOAD:-} ]]; then export LD_PRELOAD=$TCMALLOC; fi

seeds_of() { [[ $1 == ml-100k ]] && echo 2020,2021,2022 || echo 2020; }
data_args() { [[ $1 == ml-100k ]] || echo "--data_path=$(realpath "$DATA_PATH")"; }

lane_status() {  # exit status of a leaderboard, its log
    # 3: a cell failed (recorded in results.jsonl, named at the end of the log; --resume runs it
    # again): the lane goes on. 75 (a STOP file) or any other failure (1: the command failed)
    # ends the lane.
    if (($1 == 3)); then
        echo "   failed cells: see the end of $2"
    elif (($1 != 0)); then
        exit "$1"
    fi
}

run_lane() {  # lane models [extra flags]
    local name=$1 models=$2 extra=${3:-} dataset
    for dataset in $DATASETS; do
        local dir=$OUT/$dataset-e$EPOCHS-$name
        local committed=$DOCS/$dataset-e$EPOCHS/results.jsonl
        mkdir -p "$dir"
        # A new checkout has no $OUT (git-ignored): start from the committed results, so that
        # --resume skips every cell finished in an earlier session (an unfinished cell restarts:
        # its epoch checkpoints stayed with that session).
        if [[ ! -s $dir/results.jsonl && -s $committed ]]; then
            cp "$committed" "$dir/results.jsonl"
            echo "   $dir/results.jsonl seeded from $committed"
        fi
        echo "== $(date -u +%FT%TZ) $name lane: $models on $dataset -> $dir (log: $dir.log)"
        local status=0
        # shellcheck disable=SC2046
        $PYTHON run_recbole_fair.py --model="$models" --dataset="$dataset" $(data_args "$dataset") \
            --seeds="$(seeds_of "$dataset")" --epochs="$EPOCHS" $extra \
            --model_config=docs/leaderboards/cpu_budget.yaml \
            --leaderboard_dir="$dir" --resume >>"$dir.log" 2>&1 || status=$?
        lane_status "$status" "$dir.log"
    done
}

case $lane in
gen) run_lane gen FAIR,RPG "--sid_cache_dir=$(realpath "$SID_CACHE")" ;;
seq) run_lane seq SASRec,GRU4Rec,BERT4Rec ;;
merge)
    for dataset in $DATASETS; do
        # the committed results (cells of earlier sessions), both lanes, and any other run folder
        # of this dataset and cap (variants); records found in several files count once
        files=()
        for f in "$DOCS/$dataset-e$EPOCHS/results.jsonl" "$OUT/$dataset-e$EPOCHS"-*/results.jsonl; do
            [[ -s $f ]] && files+=("$f")
        done
        if ((${#files[@]} == 0)); then
            echo "$dataset: no results yet"
            continue
        fi
        list=$(IFS=,; echo "${files[*]}")
        $PYTHON run_recbole_fair.py --leaderboard-only "$list" \
            --leaderboard_dir="$DOCS/$dataset-e$EPOCHS" ${REFERENCE:+--reference="$REFERENCE"}
    done
    ;;
*)
    echo "unknown lane '$lane': gen, seq or merge" >&2
    exit 2
    ;;
esac
