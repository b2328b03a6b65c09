# humtemp container image.
#
# Multi-stage: the build stage makes a virtualenv with humtemp and its dependencies; the
# runtime stage copies only that venv onto the same base, runs as an unprivileged numeric
# user and writes nothing outside /tmp (mount an emptyDir there with a read-only root fs).
#
#   docker build -t humtemp .                              # from PyPI, base python:3.12-slim
#   buildah bud --network none --pull-never \
#     --build-arg BASE=localhost/debian-py:bookworm \
#     --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src/wheels -t humtemp .
#                                                          # offline, wheels from `pip wheel -w wheels . setuptools wheel`
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
# Declared without defaults: when given with --build-arg, pip reads them from the environment.
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY . /src
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir /src \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/humtemp --help > /dev/null

FROM ${BASE}
LABEL org.opencontainers.image.title="humtemp" \
      org.opencontainers.image.description="Sharded temperature/humidity ingestion service" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    HUMTEMP_HOST=0.0.0.0 \
    HUMTEMP_PORT=8000
WORKDIR /tmp
# Numeric so Kubernetes runAsNonRoot can verify it; no passwd entry needed.
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["humtemp"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
