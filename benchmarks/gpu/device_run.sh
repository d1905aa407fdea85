#!/usr/bin/env bash
# One call on the lent GPU machine (prepare with benchmarks/gpu/prepare_bundle.sh first; carry
# .whl, .devrun/datasets and .devrun/sid). Runs, side by side on the one GPU, those of
#   fair512    FAIR at the paper's width (properties/model/FAIR.yaml, d=512) under the CPU
#              leaderboards' 40-epoch schedule (docs/leaderboards/gpu_paper_width.yaml)
#   fair512id  the same with the item-ID digit and the item-level loss
#   sasrec200  SASRec-CE with RecBole's defaults and a 200-epoch cap (early stopping)
#   fairpaper  FAIR with properties/model/FAIR.yaml as it stands: the paper's width and recipe
#              (up to 150 epochs, 10,000 warm-up steps, patience 20); not in the default RUNS:
#              ~9 minutes alone on an H200, so RUNS=fairpaper TMAIN=560, nothing beside it
#   ddp        FAIR d=128 for 2 epochs through RecBole's DDP path (--nproc=1 --world_size=1)
# that RUNS names (default: fair512 fair512id sasrec200 ddp), seed 2020, each cut at TMAIN
# seconds (default 430; ddp: TDDP, 240). Results, logs and GPU utilisation come back as
# $OUT/results.tar.gz, with versions and exit codes in $OUT/summary.txt. Measured on an H200
# (docs/notes/investigation.md, section 0e): fair512 alone 188 s for 40 epochs; the three side
# by side reach ~35 / 31 / 60 epochs in 430 s.
T0=$(date +%s)
R=$PWD
W=/tmp/w
RUNS=${RUNS:-fair512 fair512id sasrec200 ddp}
rm -rf /tmp/site $W && mkdir -p $W
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl || exit 3
# the faiss stand-in comes from benchmarks/gpu (numpy 2 is handled by recbole_fair/compat.py)
export PYTHONPATH=/tmp/site:$R/benchmarks/gpu:$R PYTHONUNBUFFERED=1
S=$OUT/summary.txt
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import sys, torch, numpy, pandas, scipy, recbole, recbole_fair, faiss
print(sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name(0))
print('numpy', numpy.__version__, 'pandas', pandas.__version__, 'scipy', scipy.__version__,
      'recbole', recbole.__version__)"
} >$S 2>&1 || { cat $S; exit 4; }

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
    [[ -n ${args[$n]:-} ]] || { echo "unknown run '$n'" >>$S; continue; }
    t=${TMAIN:-430}
    [[ $n == ddp ]] && t=${TDDP:-240}
    lb=--leaderboard_dir=$W/$n
    [[ $n == ddp ]] && lb=
    (
        s=$(date +%s)
        # shellcheck disable=SC2086
        timeout "$t" python3 run_recbole_fair.py ${args[$n]} $lb >"$W/$n.log" 2>&1
        echo "$n rc=$? wall=$(($(date +%s) - s))s" >>$W/rc.txt
    ) &
    pids+=($!)
done
(while sleep 20; do
    echo "t=$(($(date +%s) - T0))s $(nvidia-smi --format=csv,noheader \
        --query-gpu=utilization.gpu,memory.used)"
done) >>$W/gpu_util.txt 2>&1 &
mon=$!
wait "${pids[@]}"
kill $mon
cat $W/rc.txt >>$S
echo "total $(($(date +%s) - T0))s" >>$S
tar czf "$OUT/results.tar.gz" -C $W --exclude=checkpoints .
cat $S
for f in "$W"/*.log; do
    echo "== $f"
    grep -E -A8 "best epoch .* trained|Traceback|Error" "$f" | tail -10
done
