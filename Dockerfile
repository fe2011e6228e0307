# Hebbian Mirror images: one file, two targets.
#   docker build --target cpu  -t hebbian-mirror:cpu .    # PyTorch's CPU wheels (several GB smaller)
#   docker build --target cuda -t hebbian-mirror:cuda .   # PyPI's CUDA wheels; run with --gpus all
# Both run `hebbian-mirror serve` as a non-root user on 0.0.0.0:8000. Settings: HEBBIAN_MIRROR_* variables
# (docker run -e HEBBIAN_MIRROR_MODELS=yolov3-tiny ...) or flags after the image name (docker run IMAGE --model
# yolov3-tiny). Change the port with HEBBIAN_MIRROR_PORT, not --port: the HEALTHCHECK reads that variable.
#
# CUDA target: python:slim + PyPI's default torch wheels, not an nvidia/cuda base. Those wheels bring their own
# CUDA runtime, cuDNN and NCCL (the nvidia-* packages); the host only provides the driver, through the NVIDIA
# Container Toolkit. An nvidia/cuda:*-runtime image would add a second copy of those libraries, and its Python
# (Ubuntu's) is not the one the venv below is built for.

ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm

# ---- builder: a venv in /opt/venv; the project's dependencies are read from pyproject.toml, the only list of them
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
COPY pyproject.toml README.md ./
# dependencies.txt: [project].dependencies; torch.txt: its torch and torchvision lines (for the CPU index).
# Dependencies get layers of their own, so that a change to src/ does not reinstall PyTorch.
RUN python -c "import re, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
torch = [d for d in deps if re.split(r'[^A-Za-z0-9._-]', d, maxsplit=1)[0].lower() in ('torch', 'torchvision')]; \
open('dependencies.txt', 'w').write('\n'.join(deps) + '\n'); \
open('torch.txt', 'w').write('\n'.join(torch) + '\n')"

# cpu: torch and torchvision from PyTorch's CPU index first; the rest from PyPI then keeps them
FROM builder AS builder-cpu
RUN pip install --index-url https://download.pytorch.org/whl/cpu -r torch.txt
RUN pip install -r dependencies.txt
COPY src ./src
RUN pip install --no-deps . \
 && python -c "import torch; assert torch.version.cuda is None, 'a CUDA build of torch replaced the CPU one'"

# cuda: everything from PyPI, whose Linux x86_64 torch wheels are the CUDA builds
FROM builder AS builder-cuda
RUN pip install -r dependencies.txt
COPY src ./src
RUN pip install --no-deps . \
 && python -c "import torch; assert torch.version.cuda, 'this torch build has no CUDA'"

# ---- runtime: what both images share (the venv is copied in by each target)
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime
# libGL and GLib: OpenCV, which the trackers package (stream tracking) pulls in, cannot be imported without them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin hebbian \
 && mkdir -p /data/weights /data/events \
 && chown -R hebbian:hebbian /data
# Weights are downloaded into /data/weights on first use (HEBBIAN_MIRROR_OFFLINE=1 forbids it; mount a folder
# holding them instead); events (database, snapshots, clips) go to /data/events. Both are volumes.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HEBBIAN_MIRROR_HOST=0.0.0.0 \
    HEBBIAN_MIRROR_PORT=8000 \
    HEBBIAN_MIRROR_WEIGHTS=/data/weights \
    HEBBIAN_MIRROR_EVENTS_DIR=/data/events
VOLUME ["/data/weights", "/data/events"]
WORKDIR /home/hebbian
USER hebbian
EXPOSE 8000
# Healthy once /ready answers 200: every model loaded and warm (503 while loading or a worker restarts).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HEBBIAN_MIRROR_PORT', '8000') + '/ready', timeout=4)"]
ENTRYPOINT ["hebbian-mirror", "serve"]
# Extra arguments of `serve`: docker run IMAGE --model yolov3-tiny --api-key KEY
CMD []

FROM runtime AS cpu
COPY --from=builder-cpu /opt/venv /opt/venv

FROM runtime AS cuda
# What the NVIDIA Container Toolkit exposes to the container when it runs with a GPU (--gpus all, compose deploy).
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=builder-cuda /opt/venv /opt/venv
