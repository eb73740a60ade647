# One image for the four Rekisteri services and the operator CLI (issue 8).
#   docker build -t rekisteri .
#   docker run --env-file .env rekisteri serve contacts
# No secret is baked in: REKISTERI_TOKEN_SECRET and DATABASE_URL come from the environment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # In a container the services must listen on every interface, not 127.0.0.1.
    HTTP_HOST=0.0.0.0 \
    # Apache Kafka supports idempotent producers (the embedded Tansu broker does not).
    KAFKA_ENABLE_IDEMPOTENCE=true

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN mkdir -p shared services \
    && touch shared/__init__.py services/__init__.py \
    && pip install . \
    && pip uninstall -y rekisteri \
    && rm -rf shared services build *.egg-info

# The code, installed editable so the SQL migrations are read from /app.
COPY shared ./shared
COPY services ./services
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin rekisteri

USER rekisteri
EXPOSE 8001 8002 8003 8004

ENTRYPOINT ["rekisteri"]
CMD ["--help"]
