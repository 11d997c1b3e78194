#!/usr/bin/env bash
# Final runs of one model at one point over seeds on a GPU node without Ray (a borrowed machine with torch,
# numpy, pandas, pyarrow, but no Ray, DGL, optuna or pydantic): in-process `mentor_ray.train`, every seed at
# once on the one GPU, each under a deadline, each summary written to $OUT as it ends. Back here the summaries
# join a results store as final runs, where the leaderboard's Table 2, paired tests and Fig. 6 take them:
#
#     mentor-ray results add --results runs/ul/mmssl/results --role final --sweep tiktok_mmssl_point OUT/*.json
#
# Prepared on this machine (the node has no package index):
#
#     python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#         -d .whl pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
#         typing-extensions==4.16.0
#     mkdir -p .data && cp -r ../shared/datasets/tiktok .data/      # .whl/ and .data/ are ignored: carry them
#
# On the node (the device tool: carry [".whl", ".data"]):
#
#     bash tools/device_finals.sh tiktok .data mmssl 0,1,2,3,4 100 480 patience=20
#
# Arguments: dataset, data root ("-": none, for synth-* presets), variant, comma-separated seeds, max epochs,
# seconds each run may take (then it is stopped: no summary, its log says so), then key=value settings for
# every run (device=cuda unless given). Settings are the ones a sweep's final run of a point-only space gets
# (tune_spaces/*_point.yaml: the space's fixed settings, --max-epochs, the seed), so that the rows match a
# sweep's. Files in $OUT (at most 8 come back): one summary per finished seed, and one log of all runs.
# On a CPU (to try it): OUT=$(mktemp -d) bash tools/device_finals.sh synth-tiny - mmssl 0,1 2 120 device=cpu
set -u
if [ $# -lt 6 ]; then
    echo "usage: tools/device_finals.sh DATASET DATA_ROOT VARIANT SEEDS MAX_EPOCHS SECONDS [key=value ...]" >&2
    exit 2
fi
dataset=$1 root=$2 variant=$3 seeds=$4 epochs=$5 deadline=$6
shift 6
out=${OUT:?OUT: the folder the summaries go to}
mkdir -p "$out"
settings=("$@")
case " ${settings[*]-} " in *" device="*) ;; *) settings+=("device=cuda") ;; esac

if ! python -c "import pydantic" 2>/dev/null; then
    # the GPU check's mechanism: .whl/*.whl unpacked into .whl/site (no pip, no index); it says what is missing
    python -c "from mentor_ray.benchmarks.gpucheck import use_local_wheels; print(use_local_wheels())" || exit 2
    export PYTHONPATH="$PWD/.whl/site${PYTHONPATH:+:$PYTHONPATH}"
fi
root_flag=()
[ "$root" != "-" ] && root_flag=(--data-root "$root")

IFS=, read -r -a seed_list <<< "$seeds"
n=${#seed_list[@]}
cores=$(nproc)
threads=$(( cores / n > 0 ? cores / n : 1 ))
logs=$(mktemp -d)
echo "[device_finals] $variant on $dataset: seeds ${seed_list[*]} at once, $threads CPU thread(s) each," \
     "at most $epochs epochs and ${deadline}s each; settings: ${settings[*]}"
start=$(date +%s)
pids=()
for s in "${seed_list[@]}"; do
    # the summary is written to a temporary name and renamed when whole: $OUT never holds half a file
    ( timeout -s TERM -k 30 "$deadline" python -m mentor_ray.train --dataset "$dataset" "${root_flag[@]}" \
          --variant "$variant" --max-epochs "$epochs" --seed "$s" --threads "$threads" \
          --summary "$logs/$variant-s$s.json" "${settings[@]}" > "$logs/$variant-s$s.log" 2>&1
      rc=$?
      if [ $rc -eq 0 ] && [ -s "$logs/$variant-s$s.json" ]; then
          mv "$logs/$variant-s$s.json" "$out/$variant-s$s.json.part" && mv "$out/$variant-s$s.json.part" "$out/$variant-s$s.json"
          echo "[device_finals] seed $s: done after $(( $(date +%s) - start ))s"
      else
          echo "[device_finals] seed $s: exit $rc after $(( $(date +%s) - start ))s (124: over ${deadline}s); no summary"
      fi
      exit $rc ) &
    pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
for s in "${seed_list[@]}"; do
    echo "===== seed $s"
    cat "$logs/$variant-s$s.log"
done > "$out/$variant-runs.log"
tail -n 3 "$logs"/*.log
echo "[device_finals] $((n - failed)) of $n seeds finished in $(( $(date +%s) - start ))s; summaries in $out"
[ $failed -eq 0 ]
