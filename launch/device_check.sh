#!/usr/bin/env bash
# The accelerator comparison of fdx with PyTorch on the same device (README: Performance, "On a GPU"): the train step
# of both backbones in f32 (vs PyTorch eager f32) and bf16 (vs AMP bf16 autocast, + channels-last, + torch.compile),
# their bf16 eval-mode forward, and one method's own full-size step; then one table (`fdx bench summary`). A run that
# fails is a row naming its log; the others go on.
#
#   launch/device_check.sh [OUT_DIR]          # default: device_check; JSON, logs and table.md land there
#
# Environment (defaults are the GPU run's): FDX (the fdx command: `fdx`), ARCHS ("resnet50:224 xception:299"),
# BATCH (128), METHOD (experiments/panet_ffpp.py), WARMUP (2), REPEATS (5), COMPILE_ARCHS ("resnet50": the archs whose
# bf16 step is also timed against torch.compile, which compiles in the warm-up and costs minutes). Each run pays
# its start, XLA's compile and autotuning, which is most of the time. The test runs it on the CPU with tiny sizes.
set -uo pipefail
out=${1:-device_check}
mkdir -p "$out"
read -r -a fdx <<< "${FDX:-fdx}"
archs=${ARCHS:-resnet50:224 xception:299}
batch=${BATCH:-128}
method=${METHOD:-experiments/panet_ffpp.py}
timing=(--warmup "${WARMUP:-2}" --repeats "${REPEATS:-5}" --pause 0.1)
compile_archs=" ${COMPILE_ARCHS-resnet50} "

runs=()
bench() {  # NAME ARGS...: one `fdx bench` run, its figures in NAME.json, or a failure record there
  local name=$1
  shift
  runs+=("$out/$name.json")
  echo "== $name: fdx bench $*"
  if "${fdx[@]}" bench "$@" --json "$out/$name.json" > "$out/$name.log" 2>&1; then
    tail -n 3 "$out/$name.log"
  else
    tail -n 3 "$out/$name.log"
    printf '{"failed": "%s", "log": "%s"}\n' "$name" "$out/$name.log" > "$out/$name.json"
  fi
}

for spec in $archs; do
  arch=${spec%%:*}
  size=${spec##*:}
  common=(--arch "$arch" --size "$size" --batch "$batch" "${timing[@]}")
  compiled=$([[ $compile_archs == *" $arch "* ]] && echo ',amp+channels_last+compile')
  bench "step_${arch}_f32" step "${common[@]}" --dtype f32 --vs-torch eager --peak
  bench "step_${arch}_bf16" step "${common[@]}" --dtype bf16 --vs-torch "amp,amp+channels_last$compiled"
  bench "predict_${arch}_bf16" predict "${common[@]}" --dtype bf16 --vs-torch amp+channels_last
done
bench step_method step --arch "$method" "${timing[@]}"
"${fdx[@]}" bench summary "${runs[@]}" | tee "$out/table.md"
