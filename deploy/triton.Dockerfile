# NVIDIA's Triton Inference Server with what hfrisk's python-backend model needs on the GPU.
#
# triton_models/hfrisk/1/model.py runs the exported network with ONNX Runtime inside Triton's
# python backend (triton_models/README.md explains why). The stub runs this container's own
# python3, so the packages go into it:
#   * onnxruntime-gpu, built for CUDA 12 and cuDNN 9 like the 24.xx containers; NOT also the
#     CPU 'onnxruntime' package, which would shadow it (the two install the same module);
#   * numpy<2: under numpy 2 the python backend stub of these releases answers every request
#     with empty outputs and logs nothing.
# The model repository itself is mounted at /models (read-only) by docker-compose.yml.
#
# 24.10 is Triton 2.51, the server the nvidia-pytriton wheel runs locally and in CI, so the
# GPU deployment serves what the tests load. Its CUDA 12.6 wants NVIDIA driver >= 560 (or a
# data-centre driver branch NVIDIA lists as forward compatible): see deploy/README.md.
ARG TRITON_VERSION=24.10
FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3

RUN python3 -m pip install --no-cache-dir "numpy>=1.26,<2" "onnxruntime-gpu>=1.20,<2"

# Fail the build, not the first request, if the CUDA provider is missing (no GPU needed to list it).
RUN python3 -c "import numpy, onnxruntime as ort; \
assert numpy.__version__.startswith('1.'), numpy.__version__; \
assert 'CUDAExecutionProvider' in ort.get_available_providers(), ort.get_available_providers()"

# HTTP, gRPC, metrics.
EXPOSE 8000 8001 8002

CMD ["tritonserver", "--model-repository=/models", "--model-control-mode=explicit", "--load-model=hfrisk", \
     "--model-config-name=gpu"]
