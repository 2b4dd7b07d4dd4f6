#!/usr/bin/env bash
# Multi-host training on SLURM: one task per node, each task driving all accelerators of its node. JAX reads the
# cluster from SLURM's environment (fdx.sharding.initialize_distributed), every process feeds its slice of the global
# batch, and process 0 writes logs and checkpoints. Re-submitting the same command resumes from the last checkpoint.
#
#   sbatch --nodes=4 --gpus-per-node=8 launch/slurm.sh experiments/dma_sta_dfdm.py:init=weights/resnet50 runs/dma_sta \
#       [--config.batch_size=80 ...]
#SBATCH --job-name=fdx
#SBATCH --ntasks-per-node=1
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: sbatch [slurm options] launch/slurm.sh CONFIG_SPEC WORKDIR [--config.key=value ...]" >&2
  exit 2
fi
config=$1
workdir=$2
shift 2
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
srun --kill-on-bad-exit=1 .venv/bin/fdx train --config "$config" --workdir "$workdir" "$@"
