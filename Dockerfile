# syntax=docker/dockerfile:1
# tiktok-broker: a small image that runs `broker serve` (the server and its SDK, nothing else) as a non-root user, on a read-only root file system if
# you like. Nothing secret is baked in: signing keys are mounted at /keys, settings come from BROKER_* variables.
#
# The base is pinned by tag and by the digest of the official image's multi-platform index (as published in
# docker-library's repo-info for python:3.12.14-slim-bookworm), in one place. Move both together when updating.
FROM python:3.12.14-slim-bookworm@sha256:b64e9d3a71eddaa1b3f80c04abf292b3139e3b7c4dd272d19c31dc1f91194d1b AS base

FROM base AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Everything comes from the locks (pinned with hashes): the build backend into the build stage, each image's
# dependencies into its virtualenv, then our own wheels without dependencies.
COPY requirements/build.txt requirements/server.txt requirements/emulator.txt ./requirements/
RUN python -m pip install --require-hashes --no-deps -r requirements/build.txt
COPY pyproject.toml README.md ./
COPY broker ./broker
COPY sdk ./sdk
COPY emulator ./emulator
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir /wheels/server . ./sdk \
    && python -m pip wheel --no-deps --no-build-isolation --wheel-dir /wheels/emulator ./emulator
# Virtualenvs without pip (the build stage's pip installs into them), compiled here: a running container then
# has no installer in it and never needs to write bytecode.
RUN python -m venv --without-pip /opt/broker \
    && python -m pip --python /opt/broker/bin/python install --require-hashes --no-deps -r requirements/server.txt \
    && python -m pip --python /opt/broker/bin/python install --no-deps /wheels/server/*.whl \
    && /opt/broker/bin/python -m compileall -q /opt/broker/lib \
    && python -m venv --without-pip /opt/emulator \
    && python -m pip --python /opt/emulator/bin/python install --require-hashes --no-deps \
       -r requirements/emulator.txt \
    && python -m pip --python /opt/emulator/bin/python install --no-deps /wheels/emulator/*.whl \
    && /opt/emulator/bin/python -m compileall -q /opt/emulator/lib

# `docker build --target emulator`: the TikTok emulator alone, for local trials (deploy/docker-compose.yml). It
# comes before the broker's stage so that a plain `docker build` ends with the broker, which never contains it.
FROM base AS emulator
LABEL org.opencontainers.image.title="tiktok-broker-emulator" \
      org.opencontainers.image.description="A TikTok emulator for trials and tests of tiktok-broker (never production)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/emulator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/emulator /opt/emulator
USER 10001:10001
WORKDIR /tmp
EXPOSE 8081
ENTRYPOINT ["tiktok-emulator"]
CMD ["--host", "0.0.0.0", "--port", "8081"]

FROM base AS runtime
LABEL org.opencontainers.image.title="tiktok-broker" \
      org.opencontainers.image.description="Log in with TikTok in front of every service: broker JWTs and a JWKS" \
      org.opencontainers.image.licenses="Apache-2.0"
# BROKER_DATA_DIR is used only by an embedded Redis, which the image does not have; /tmp keeps it writable anyway.
ENV PATH=/opt/broker/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BROKER_KEYS_DIR=/keys \
    BROKER_DATA_DIR=/tmp/broker
# /keys belongs to the broker user so that a named volume mounted there starts out writable by `broker keys new`.
RUN groupadd --system --gid 10001 broker \
    && useradd --system --uid 10001 --gid broker --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin broker \
    && mkdir /keys \
    && chown broker:broker /keys
COPY --from=build /opt/broker /opt/broker
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# Liveness only; orchestrators should use /readyz for readiness (it checks Redis and the signing key).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["broker"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
