#!/usr/bin/env bash
# The GPU check of the batched token field (docs/ensembles.md; benchmarks/results.md, section 4): on a machine with
# a CUDA GPU and PyTorch but no network.  The device machines lent to this project have python3 with torch, numpy,
# scipy, h5py, xarray and matplotlib; meanfield's other run-time dependencies travel as wheels in device-wheels/
# (git-ignored), downloaded here first:
#
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 --no-deps \
#       -d device-wheels ducc0 tomli-w h5netcdf          # 15 MB
#
# and carried with the working tree (the device tool's carry: ["device-wheels"]).  Then, from the repository root:
#
#   bash benchmarks/device_rotf.sh        # about 5 minutes on an H100
#
# It prints, in one process: the batched field (2048 systems of 32 tokens, rotf's settings) with numpy on one core
# (the CPU baseline) and with torch on the GPU, their largest difference; one rotf_base run each way; and the 90
# runs of the rotf diagram with torch on the GPU one after the other, against the 5-minute target.  BETAS=10 times
# ten of the runs; DEVICE=cpu runs it without a GPU (a dry run of the script).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d device-wheels ]; then
    python3 -m pip install --quiet --no-index --no-deps --find-links device-wheels ducc0 tomli-w h5netcdf
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # meanfield from this tree, not installed (no git metadata there)
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
timeout 560 python3 benchmarks/bench_ensembles.py --torch "${DEVICE:-cuda}" --betas "${BETAS:-90}"
