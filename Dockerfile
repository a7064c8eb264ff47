# syntax=docker/dockerfile:1
# resctrl-pipeline: the per-node agent image (see docs/operations.md).
#
#   docker build -t registry.example.com/resctrl-pipeline:0.1.0 .
#
# Two stages: the first installs the package and its dependencies into a virtualenv
# (every dependency ships manylinux wheels, so no compiler is needed even there); the
# final image gets only that virtualenv on the same slim Python base, so pip's cache,
# build artefacts and the source tree stay behind.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY resctrl_pipeline ./resctrl_pipeline
COPY actors ./actors
RUN python -m venv /opt/resctrl-pipeline \
 && /opt/resctrl-pipeline/bin/pip install .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="resctrl-pipeline" \
      org.opencontainers.image.description="Per-pod LLC occupancy from Linux resctrl and containerd NRI, written to Parquet" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/resctrl-pipeline /opt/resctrl-pipeline
ENV PATH=/opt/resctrl-pipeline/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Root, on purpose: the kernel lets only global root (euid 0) move other users'
# threads into a resctrl group, and the resctrl, NRI and data paths on the host are
# root's. No capability is needed beyond that; the DaemonSet drops them all
# (deploy/kubernetes/daemonset.yaml, docs/operations.md "Privileges").
USER 0:0
ENTRYPOINT ["resctrl-pipeline"]
CMD ["up", "--config", "/etc/resctrl-pipeline/config.toml"]
