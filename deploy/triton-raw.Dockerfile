# NVIDIA's Triton Inference Server serving hfrisk and hfrisk_raw: the raw-window model runs the
# front end on the GPU (HFRISK_STREAM__PREPROCESS_ON=server, docs/serving.md). Built by
# deploy/compose.server-preprocessing.yml; the default deployment uses deploy/triton.Dockerfile.
# Build context: the repository root; deploy/triton-raw.Dockerfile.dockerignore keeps it to the
# package sources.
#
# hfrisk_raw/1/model.py imports hfrisk, so the container's python3 (which the python backend stub
# runs) gets the package and what its front end imports (deploy/triton-raw-requirements.txt), on
# top of deploy/triton.Dockerfile's numpy<2 and onnxruntime-gpu.
ARG TRITON_VERSION=24.10
FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3

RUN python3 -m pip install --no-cache-dir "numpy>=1.26,<2" "onnxruntime-gpu>=1.20,<2"
# torch from PyPI is its CUDA build on Linux x86-64.
COPY deploy/triton-raw-requirements.txt /tmp/triton-raw-requirements.txt
RUN python3 -m pip install --no-cache-dir -r /tmp/triton-raw-requirements.txt

WORKDIR /opt/hfrisk-src
COPY pyproject.toml README.md ./
COPY hfrisk ./hfrisk
COPY model ./model
COPY training ./training
COPY stream ./stream
RUN python3 -m pip install --no-cache-dir --no-deps . && cd / && rm -rf /opt/hfrisk-src
WORKDIR /

# Fail the build, not the model's load, if a piece is missing (no GPU needed for these checks).
RUN python3 -c "import numpy, onnxruntime as ort, torch, hfrisk.serving.raw_windows; \
assert numpy.__version__.startswith('1.'), numpy.__version__; \
assert 'CUDAExecutionProvider' in ort.get_available_providers(), ort.get_available_providers(); \
assert torch.version.cuda, 'torch without CUDA'"

# HTTP, gRPC, metrics.
EXPOSE 8000 8001 8002

CMD ["tritonserver", "--model-repository=/models", "--model-control-mode=explicit", "--load-model=hfrisk", \
     "--load-model=hfrisk_raw", "--model-config-name=gpu"]
