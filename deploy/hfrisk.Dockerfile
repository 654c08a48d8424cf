# The hfrisk package: stream workers (`hfrisk worker`), the replay producer (`hfrisk replay`)
# and the topic-creation job. Build context: the repository root (docker-compose.yml sets it);
# deploy/hfrisk.Dockerfile.dockerignore keeps the virtualenv, test data and runs out of it.
#
# The workers call Triton for inference, so this image needs no GPU. torch comes with the
# package's dependencies (the model code imports it); to skip the CUDA wheels, build with
#   --build-arg PIP_EXTRA_INDEX_URL=<a CPU-only torch wheel index>
FROM python:3.11-slim AS build

ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}

WORKDIR /src
COPY pyproject.toml README.md ./
COPY hfrisk ./hfrisk
COPY model ./model
COPY training ./training
COPY stream ./stream
RUN python -m venv /opt/hfrisk && /opt/hfrisk/bin/pip install .

FROM python:3.11-slim

# libgomp: OpenMP runtime of torch / ONNX Runtime CPU kernels.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/hfrisk /opt/hfrisk
ENV PATH=/opt/hfrisk/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HFRISK_PATHS__STATE_DIR=/var/lib/hfrisk

RUN useradd --system --create-home --uid 10001 hfrisk \
 && mkdir -p /var/lib/hfrisk && chown hfrisk /var/lib/hfrisk
USER hfrisk
WORKDIR /home/hfrisk

ENTRYPOINT ["hfrisk"]
CMD ["--help"]
