#!/usr/bin/env bash
# Issue #15's GPU measurements, prepared here and run in one call on a lent GPU machine.
#
#   bash scripts/gpu_check.sh prepare      # here: .whl/ gets hfrisk's wheel and what the GPU image lacks
#   bash scripts/gpu_check.sh run          # there, as the device tool's command, with carry [".whl"]
#
# The GPU image has Python 3.12 with torch, CuPy, onnxruntime (CPU), numpy 2, scipy, pandas and
# pyarrow, but not pydantic, structlog, wfdb, the readers' libraries or hfrisk itself, and it cannot
# reach PyPI (the device tool's README). `prepare` downloads those as cp312 wheels (the
# versions this checkout's .venv runs) and builds hfrisk's own wheel, so that `run` imports hfrisk as
# installed (its packages map model/, stream/ and training/ into hfrisk.*) with --no-deps.
#
# The checkout (~19 MB) and .whl (~17 MB) travel: within the tool's 64 MiB.
#
# `run` writes into $OUT (what comes back): nvidia-smi's view, bench_frontend_device's page
# (frontend-device.json/.md: the front end on the GPU against numpy, verdicts and scores), bench_serving's GPU page
# (serving-cuda.json/.md: the front end on torch/CUDA, the network, both, at batches 256 to 4,096),
# bench_screening_gpu's (screening-gpu.json/.md: `screen()` over 200,000 linked recordings with a
# pool process a core, the front end and the network on the GPU: issue #15's 20,000 ECG/s), and a
# log. Copy the pages into docs/bench/ and re-derive docs/bench/sizing.md's GPU rows from them.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installed in the checkout's .venv, absent from the GPU image (its package list:
# scripts/gpu-image-packages.txt). Versions are read from the .venv so both run the same code.
CARRIED=(pydantic pydantic_core pydantic-settings annotated-types typing-inspection python-dotenv
         array-api-compat wfdb soundfile cffi pycparser pydicom pyedflib fhir.resources fhir-core hl7
         structlog tenacity fastavro pytz)

prepare() {
    rm -rf .whl && mkdir -p .whl
    local spec=()
    for name in "${CARRIED[@]}"; do
        spec+=("$name==$(.venv/bin/python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")")
    done
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "${spec[@]}"
    python3 -m pip wheel -q --no-deps -w .whl .  # pure Python; setuptools fetched for the build
    rm -rf build
    du -sh .whl
}

run() {
    local out=${OUT:-/tmp/gpu-check} repo=$PWD
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/hfrisk-site .whl/*.whl
    # hfrisk as installed, before the checkout's own hfrisk/ (which lacks the mapped packages);
    # the checkout for bench/ only. Hence the commands run from /tmp, not from the checkout.
    export PYTHONPATH=/tmp/hfrisk-site:$repo PYTHONUNBUFFERED=1
    (nvidia-smi || true) > "$out/nvidia-smi.txt" 2>&1
    cd /tmp
    python3 -c "import torch, numpy, hfrisk.model.frontend.preprocessing as p; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__, 'hfrisk', p.__file__)" \
        2>&1 | tee "$out/log.txt"
    # Each measurement on its own: one failing leaves the others' pages. First the front end on
    # the GPU against numpy (seconds): the same windows and scores, or the rest is moot.
    timeout 120 python3 -m bench.bench_frontend_device --device cuda --out "$out" \
        2>&1 | tee -a "$out/log.txt" || echo "bench_frontend_device failed: $?" | tee -a "$out/log.txt"
    timeout 300 python3 -m bench.bench_serving --device cuda --gpu-batches 256 1024 4096 --seconds 3 --out "$out" \
        2>&1 | tee -a "$out/log.txt" || echo "bench_serving failed: $?" | tee -a "$out/log.txt"
    timeout 300 python3 -m bench.bench_screening_gpu --device cuda --records 200000 --chunk-size 256 --out "$out" \
        2>&1 | tee -a "$out/log.txt" || echo "bench_screening_gpu failed: $?" | tee -a "$out/log.txt"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
