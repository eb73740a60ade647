# One image for the four Rekisteri services, the portal and the operator CLI (issues 8, 17, 19).
#   docker build -t rekisteri .
#   docker run --env-file .env rekisteri serve contacts
# No secret is baked in: REKISTERI_TOKEN_SECRET and DATABASE_URL come from the environment.
#
# The base is pinned by digest (python:3.11-slim, multi-arch index), so a rebuild gets the
# same bytes. To move to a newer base: `docker buildx imagetools inspect python:3.11-slim`
# and put its "Digest:" in both FROM lines (or let Renovate/Dependabot's docker updater do it).

# --- build: the locked runtime dependencies and the code, into one virtualenv -------------
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7 AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/rekisteri

# Dependencies first, so a code change does not reinstall them: exactly the lock's pins,
# each checked against its hash, wheels only (no compiler in the image). The runtime lock
# has no embedded-stack packages (PostgreSQL binaries, the Tansu broker).
COPY requirements/runtime.txt requirements/runtime.txt
RUN /opt/rekisteri/bin/pip install --require-hashes --only-binary=:all: -r requirements/runtime.txt

# The code, installed as a wheel (not editable): the SQL migrations are package data.
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
RUN /opt/rekisteri/bin/pip install --no-deps . \
    && /opt/rekisteri/bin/pip uninstall --yes pip

# --- runtime: the virtualenv and a non-root user, nothing else --------------------------
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/rekisteri/bin:$PATH \
    # In a container the services must listen on every interface, not 127.0.0.1.
    HTTP_HOST=0.0.0.0 \
    # Apache Kafka supports idempotent producers (the embedded Tansu broker does not).
    KAFKA_ENABLE_IDEMPOTENCE=true

RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin rekisteri
COPY --from=build /opt/rekisteri /opt/rekisteri

# `rekisteri_build_info{commit=...}` on /metrics: docker build --build-arg REKISTERI_COMMIT=$(git rev-parse HEAD) .
ARG REKISTERI_COMMIT=unknown
ENV REKISTERI_COMMIT=${REKISTERI_COMMIT}

# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001
WORKDIR /tmp
EXPOSE 8000 8001 8002 8003 8004

# /healthz of the service this container serves (read from its command line); a one-shot
# CLI container is healthy while it runs. Compose and Kubernetes use their own probes.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "shared.ops.healthcheck"]

ENTRYPOINT ["rekisteri"]
CMD ["--help"]
