# syntax=docker/dockerfile:1
# tiktok-broker: a small image that runs `broker serve` as a non-root user.
# Nothing secret is baked in: signing keys are mounted at /keys and settings come from BROKER_* variables.

ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY broker ./broker
RUN python -m venv /opt/broker \
    && /opt/broker/bin/pip install --no-compile . \
    && find /opt/broker -name '__pycache__' -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/broker/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BROKER_KEYS_DIR=/keys \
    BROKER_DATA_DIR=/tmp/broker
RUN groupadd --system --gid 10001 broker \
    && useradd --system --uid 10001 --gid broker --no-create-home --shell /usr/sbin/nologin broker \
    && mkdir /keys && chown broker:broker /keys
COPY --from=build /opt/broker /opt/broker
USER 10001:10001
EXPOSE 8080
# Liveness only; orchestrators should use /readyz for readiness (it checks Redis and the signing key).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["broker"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
