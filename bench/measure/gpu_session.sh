#!/usr/bin/env bash
# The receiver on a GPU (issue 19) in one device call: the benchmark, the refiner's training, and the comparison.
#
#   bash bench/measure/gpu_session.sh prepare    # CPU machine with the corpus, before: packs .gpu/ (git ignores it)
#   bash bench/measure/gpu_session.sh run        # the GPU machine, through the device tool, carrying .gpu
#   bash bench/measure/gpu_session.sh rehearse   # the same steps on this CPU, tiny (about 3 minutes)
#
# The GPU machine has torch, numba and OpenCV but no MediaPipe, PyAV or corpus, and no network: `prepare` does
# everything that needs them (bench.measure.gpu_prepare, talk-train renderer-pack) and nothing is installed
# there. `run` takes about 6 minutes (BENCH_S + TRAIN_MIN + the comparison), so that a 15-minute lease has room
# to run it twice; it writes into $OUT (at most 5 files, each well under 16 MiB):
#   session.log          everything printed
#   gpu.json             bench.measure.gpu's figures (copy it to docs/gpu.json)
#   renderer_gpu.pt      the refiner trained on the GPU (never over codec/data/renderer.pt)
#   train.json           its training figures
#   refiner_compare.json the new refiner against the shipped one on the bundle's held-out clips; ship only after
#                        `python -m bench.measure.refiner_ship --candidate renderer_gpu.pt --ship` on the corpus
set -u
mode=${1:-}
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here" || exit 1
export PYTHONPATH=$here${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
BENCH_S=${BENCH_S:-150}
TRAIN_MIN=${TRAIN_MIN:-2.5}

case "$mode" in
prepare)
    py=${PYTHON:-python}
    "$py" -m bench.measure.gpu_prepare --out .gpu/bench.npz || exit 1
    "$py" -m codec.train.refiner_pack --out .gpu/train.npz || exit 1
    tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
    gpu=$(du -cb .gpu/bench.npz .gpu/train.npz | tail -1 | cut -f1)
    echo "working tree $((tree / 1048576)) MiB + .gpu $((gpu / 1048576)) MiB travel (the device tool takes 64 MiB)"
    [ $((tree + gpu)) -lt $((62 * 1048576)) ] || { echo "too large to carry: pack fewer frames"; exit 1; }
    exit 0 ;;
run)
    py=${PYTHON:-python3}
    device=cuda
    bench=(--bundle .gpu/bench.npz --budget-s "$BENCH_S")
    train=(--data .gpu/train.npz --minutes "$TRAIN_MIN")
    compare=(--bundle .gpu/bench.npz) ;;
rehearse)
    py=${PYTHON:-python}
    device=cpu
    [ -f .gpu-rehearsal/bench.npz ] || "$py" -m bench.measure.gpu_prepare --quick --out .gpu-rehearsal/bench.npz || exit 1
    [ -f .gpu-rehearsal/train.npz ] || "$py" -m codec.train.refiner_pack --out .gpu-rehearsal/train.npz \
        --clips 3 --frames-per-clip 6 --sources 1 || exit 1
    bench=(--bundle .gpu-rehearsal/bench.npz --rehearse)
    train=(--data .gpu-rehearsal/train.npz --minutes 0.8 --batch 4 --patch 96 --log-every 5 --save-reserve-s 3)
    compare=(--bundle .gpu-rehearsal/bench.npz) ;;
*)
    sed -n '2,8p' "$0"
    exit 2 ;;
esac

OUT=${OUT:-$here/out-gpu}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
start=$(date +%s)
stamp() { echo "== $(( $(date +%s) - start )) s: $*"; }

stamp "preflight ($mode on $device)"
uname -m; uptime
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$py" - "$device" <<'EOF' || { echo "preflight failed: see above"; exit 1; }
import sys
import cv2, numba, numpy, scipy, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), numpy "
      f"{numpy.__version__}, numba {numba.__version__}, opencv {cv2.__version__}, scipy {scipy.__version__}")
if sys.argv[1] == "cuda":
    assert torch.cuda.is_available(), "torch sees no CUDA GPU"
    print("GPU:", torch.cuda.get_device_name(0))
import bench.measure.gpu, bench.measure.refiner_compare, codec.train.refiner_gpu  # no MediaPipe or PyAV needed
EOF
for f in "${bench[1]}" "${train[1]}"; do
    [ -f "$f" ] || { echo "$f is missing: run 'bash bench/measure/gpu_session.sh prepare' on a CPU machine, carry .gpu"; exit 1; }
done

stamp "bench.measure.gpu"
timeout $((${BENCH_S%.*} + 90)) "$py" -m bench.measure.gpu --device "$device" "${bench[@]}" --json "$OUT/gpu.json"
echo "bench.measure.gpu exit $?"

stamp "talk-train renderer-gpu train"
rm -f "$OUT/renderer_gpu.pt"
timeout "$(awk "BEGIN { print int($TRAIN_MIN * 60 + 120) }")" "$py" -m codec.train.refiner_gpu --device "$device" "${train[@]}" --init codec/data/renderer.pt \
    --out "$OUT/renderer_gpu.pt" --stats "$OUT/train.json"
echo "talk-train renderer-gpu exit $?"

if [ -f "$OUT/renderer_gpu.pt" ]; then
    stamp "bench.measure.refiner_compare"
    timeout 180 "$py" -m bench.measure.refiner_compare --candidate "$OUT/renderer_gpu.pt" "${compare[@]}" \
        --device "$device" --json "$OUT/refiner_compare.json"
    echo "bench.measure.refiner_compare exit $?"
fi
stamp "done"
ls -la "$OUT"
