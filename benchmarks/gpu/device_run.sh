#!/usr/bin/env bash
# One call on the lent GPU machine (prepare with benchmarks/gpu/prepare_bundle.sh first; carry
# .whl, .devrun/datasets and .devrun/sid). RUNS picks what runs; OUT (set by the device tool) is
# the folder that comes back. benchmarks/gpu/README.md has the exact call.
#
# RUNS=suite: the one-window GPU suite (benchmarks/gpu/README.md). FAIR, RPG, TIGER and
#   SASRec-CE on Amazon_Beauty, side by side on the one GPU, each a leaderboard cell (seed 2020)
#   with its recipe and epoch cap from docs/leaderboards/gpu_suite.yaml (bfloat16 autocast for
#   the semantic-ID models, evaluation batches for the GPU, FLOPs counted on one batch), all
#   within SUITE_BUDGET seconds of this script's start (default 540, for a 600 s call): a cell
#   whose next epoch would end later than SUITE_TEST_RESERVE (default 60) seconds before that
#   stops training there and is tested (costs.stopped_at_deadline), and --cell_timeout kills
#   one still running at the budget. Writes, as it goes, $OUT/suite/<model>/ (results.jsonl,
#   leaderboard.md/csv, run.log, RecBole's log), $OUT/gpu_util.csv (nvidia-smi every second),
#   $OUT/gpu_pmon.txt (per process), $OUT/ps.txt, and at the end $OUT/suite_report.md
#   (benchmarks/gpu/suite_report.py: per-epoch time, FLOPs, model FLOP utilisation).
#   For the CPU dry run (tests/test_gpu_suite.py) or other data: SUITE_DEVICE=cpu,
#   SUITE_DATASET, SUITE_DATA_PATH, SUITE_SID_CACHE, SUITE_MODELS ("FAIR RPG TIGER SASRec"),
#   SUITE_OVERLAY (a YAML of per-model updates merged over the suite's), SUITE_ARGS (extra
#   --key=value for every cell), SUITE_THREADS (CPU threads per cell; default cores / cells).
# Otherwise RUNS names runs among (default: fair512 fair512id sasrec200 ddp)
#   fair512    FAIR at the paper's width (properties/model/FAIR.yaml, d=512) under the CPU
#              leaderboards' 40-epoch schedule (docs/leaderboards/gpu_paper_width.yaml)
#   fair512id  the same with the item-ID digit and the item-level loss
#   sasrec200  SASRec-CE with RecBole's defaults and a 200-epoch cap (early stopping)
#   fairpaper  FAIR with properties/model/FAIR.yaml as it stands: the paper's width and recipe
#              (up to 150 epochs, 10,000 warm-up steps, patience 20); not in the default RUNS:
#              ~9 minutes alone on an H200, so RUNS=fairpaper TMAIN=560, nothing beside it
#   ddp        FAIR d=128 for 2 epochs through RecBole's DDP path (--nproc=1 --world_size=1)
#   side by side on the one GPU, seed 2020, each cut at TMAIN seconds (default 430; ddp: TDDP,
#   240). Results, logs and GPU utilisation come back as $OUT/results.tar.gz, with versions and
#   exit codes in $OUT/summary.txt. Measured on an H200 (docs/notes/investigation.md, section
#   0e): fair512 alone 188 s for 40 epochs; the three side by side reach ~35 / 31 / 60 epochs in
#   430 s.
# Also: PYTHON (default python3), SUITE_WORK (scratch, default /tmp/w), SITE (where the wheels
# are installed, default /tmp/site), SKIP_WHEELS=1 (use this Python's packages: the bundle's
# wheels are for the device's Python 3.12; the CPU dry run sets it).
T0=$(date +%s)
R=$PWD
W=${SUITE_WORK:-/tmp/w}
SITE=${SITE:-/tmp/site}
PY=${PYTHON:-python3}
RUNS=${RUNS:-fair512 fair512id sasrec200 ddp}
: "${OUT:?set OUT to the folder of the results (the device tool sets it)}"
rm -rf "$SITE" "$W" && mkdir -p "$W" "$SITE" "$OUT"
if [[ -z ${SKIP_WHEELS:-} ]] && compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
        .whl/*.whl || exit 3
fi
# the faiss stand-in comes from benchmarks/gpu (numpy 2 is handled by recbole_fair/compat.py)
export PYTHONPATH=$SITE:$R/benchmarks/gpu:$R PYTHONUNBUFFERED=1
S=$OUT/summary.txt
{
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    fi
    "$PY" -c "import sys, torch, numpy, pandas, scipy, recbole, recbole_fair, faiss
cuda = torch.cuda.is_available()
print(sys.version.split()[0], 'torch', torch.__version__,
      torch.cuda.get_device_name(0) if cuda else 'no CUDA device')
print('numpy', numpy.__version__, 'pandas', pandas.__version__, 'scipy', scipy.__version__,
      'recbole', recbole.__version__)"
} >"$S" 2>&1 || {
    cat "$S"
    exit 4
}

# ------------------------------------------------------------------------------ RUNS=suite
monitor() {
    # GPU utilisation every second, per-process utilisation, and which process is which model
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used,power.draw \
            --format=csv -lms 1000 >"$OUT/gpu_util.csv" 2>&1 &
        echo $! >>"$W/monitors"
        nvidia-smi pmon -s um -d 1 >"$OUT/gpu_pmon.txt" 2>&1 &
        echo $! >>"$W/monitors"
    fi
    (while sleep 10; do
        echo "t=$(($(date +%s) - T0))s"
        ps -eo pid,ppid,etimes,pcpu,rss,args --no-headers |
            awk '/run_recbole_fair|spawn_main/ && !/awk/'
    done) >"$OUT/ps.txt" 2>&1 &
    echo $! >>"$W/monitors"
}

suite() {
    local budget=${SUITE_BUDGET:-540} reserve=${SUITE_TEST_RESERVE:-60}
    local models=${SUITE_MODELS:-FAIR RPG TIGER SASRec}
    local dataset=${SUITE_DATASET:-Amazon_Beauty}
    local data=${SUITE_DATA_PATH:-$R/.devrun/datasets} cache=${SUITE_SID_CACHE:-$R/.devrun/sid}
    local n m limit threads pids=() device_args=()
    # the recipe (docs/leaderboards/gpu_suite.yaml), with the dry run's overlay merged in, as one
    # --model_config file per model ($W/gpu_suite-<model>.yaml; a cell's config hash depends on
    # its model's entry only)
    "$PY" - "$R/docs/leaderboards/gpu_suite.yaml" "${SUITE_OVERLAY:-}" "$W" <<'PY' || return 5
import os
import sys

import yaml

with open(sys.argv[1], encoding="utf-8") as f:
    merged = yaml.safe_load(f)
if sys.argv[2]:
    with open(sys.argv[2], encoding="utf-8") as f:
        for model, settings in (yaml.safe_load(f) or {}).items():
            merged.setdefault(model, {}).update(settings or {})
for model, settings in merged.items():
    with open(os.path.join(sys.argv[3], f"gpu_suite-{model}.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump({model: settings}, f, sort_keys=False)
PY
    n=$(wc -w <<<"$models")
    threads=${SUITE_THREADS:-$(($(nproc) / n))}
    ((threads >= 1)) || threads=1
    [[ ${SUITE_DEVICE:-} == cpu ]] && device_args=(--use_gpu=False)
    # a cell stops training when its next epoch would end after this (recbole_fair.quick_start)
    export RECBOLE_FAIR_FIT_DEADLINE=$((T0 + budget - reserve)) OMP_NUM_THREADS=$threads
    {
        echo "suite: $models on $dataset, budget ${budget}s from the start (training deadline"
        echo "  $((budget - reserve))s), $threads CPU threads per cell; recipes:"
        cat "$W"/gpu_suite-*.yaml
    } >>"$S"
    monitor
    for m in $models; do
        mkdir -p "$OUT/suite/$m" "$W/ckpt/$m" "$W/run/$m"
        # checkpoints stay here (a link does not come back; a d=512 FAIR's are ~200 MB)
        ln -s "$W/ckpt/$m" "$OUT/suite/$m/checkpoints"
        limit=$((T0 + budget - $(date +%s)))
        ((limit >= 30)) || limit=30
        (
            s=$(date +%s)
            cd "$W/run/$m" || exit 1
            # shellcheck disable=SC2086  # SUITE_ARGS: words, one --key=value each
            timeout $((limit + 20)) "$PY" "$R/run_recbole_fair.py" --model="$m" \
                --dataset="$dataset" --data_path="$data" --sid_cache_dir="$cache" --seeds=2020 \
                --model_config="$W/gpu_suite-$m.yaml" --leaderboard_dir="$OUT/suite/$m" \
                --cell_timeout="$limit" \
                --show_progress=False --count_train_flops=True ${SUITE_ARGS:-} \
                "${device_args[@]}" >"$OUT/suite/$m/run.log" 2>&1
            rc=$?
            cp -r log "$OUT/suite/$m/recbole_log" 2>/dev/null
            echo "$m rc=$rc wall=$(($(date +%s) - s))s" >>"$W/rc.txt"
        ) &
        pids+=($!)
        echo "$m $!" >>"$OUT/suite/pids.txt"
    done
    ((${#pids[@]})) && wait "${pids[@]}"
    while read -r p; do kill "$p" 2>/dev/null; done <"$W/monitors"
    {
        cat "$W/rc.txt"
        "$PY" "$R/benchmarks/gpu/suite_report.py" "$OUT" 2>&1
        echo "total $(($(date +%s) - T0))s"
    } >>"$S"
    cat "$S"
    # 0 when every cell's leaderboard exited 0 (3: a cell failed, 124: cut by timeout)
    ! grep -qv " rc=0 " "$W/rc.txt"
}

if [[ $RUNS == suite ]]; then
    suite || exit 6
    exit 0
fi

# ------------------------------------------------------------------------------ named runs
D=$R/.devrun/datasets
C=$R/.devrun/sid
common="--dataset=Amazon_Beauty --data_path=$D --sid_cache_dir=$C --seeds=2020"
gpu_yaml=--model_config=docs/leaderboards/gpu_paper_width.yaml
declare -A args=(
    [fair512]="--model=FAIR $common --epochs=40 $gpu_yaml"
    [fair512id]="--model=FAIR $common --epochs=40 $gpu_yaml --item_id_embedding=True
                 --item_loss_weight=1.0"
    [fairpaper]="--model=FAIR $common"
    [sasrec200]="--model=SASRec $common --epochs=200 $gpu_yaml"
    [ddp]="--model=FAIR --dataset=Amazon_Beauty --data_path=$D --sid_cache_dir=$C --nproc=1
           --world_size=1 --epochs=2 --hidden_size=128 --inner_size=256 --warmup_steps=0
           --warmup_epochs=1"
)
pids=()
for n in $RUNS; do
    [[ -n ${args[$n]:-} ]] || {
        echo "unknown run '$n'" >>"$S"
        continue
    }
    t=${TMAIN:-430}
    [[ $n == ddp ]] && t=${TDDP:-240}
    lb=--leaderboard_dir=$W/$n
    [[ $n == ddp ]] && lb=
    (
        s=$(date +%s)
        # shellcheck disable=SC2086
        timeout "$t" "$PY" run_recbole_fair.py ${args[$n]} $lb >"$W/$n.log" 2>&1
        echo "$n rc=$? wall=$(($(date +%s) - s))s" >>"$W/rc.txt"
    ) &
    pids+=($!)
done
(while sleep 20; do
    echo "t=$(($(date +%s) - T0))s $(nvidia-smi --format=csv,noheader \
        --query-gpu=utilization.gpu,memory.used)"
done) >>"$W/gpu_util.txt" 2>&1 &
mon=$!
wait "${pids[@]}"
kill $mon
cat "$W/rc.txt" >>"$S"
echo "total $(($(date +%s) - T0))s" >>"$S"
tar czf "$OUT/results.tar.gz" -C "$W" --exclude=checkpoints .
cat "$S"
for f in "$W"/*.log; do
    echo "== $f"
    grep -E -A8 "best epoch .* trained|Traceback|Error" "$f" | tail -10
done
