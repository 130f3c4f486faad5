# The users service: a locked virtual environment built with uv, run by a non-root user on python:3.11-slim.
#
#   docker build -t user-service .
#   docker run --rm -p 127.0.0.1:5000:5000 -e DATABASE_URL=... user-service
#
# The root filesystem can be read-only (docker run --read-only --tmpfs /tmp): nothing is written at run time.

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# ---------------------------------------------------------------------------------------------------------
# Builder: the dependencies from uv.lock, then the project itself, into /app/.venv
# ---------------------------------------------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm AS builder

COPY --from=uv /uv /usr/local/bin/uv

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# Dependencies first: this layer is reused until pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project

# The project, installed from the source tree (the service finds migrations/ next to service/).
COPY README.md ./
COPY service ./service
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev

# ---------------------------------------------------------------------------------------------------------
# Runtime: the virtual environment and the code, nothing else
# ---------------------------------------------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="user-service" \
      org.opencontainers.image.description="Users REST API"

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app

WORKDIR /app

COPY --from=builder /app/.venv /app/.venv
COPY service ./service
COPY migrations ./migrations
COPY alembic.ini ./

# Byte-compiled now, as the image is read-only at run time.
RUN python -m compileall -q /app/service /app/migrations

ENV PATH=/app/.venv/bin:$PATH \
    VIRTUAL_ENV=/app/.venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=5000 \
    LOG_FORMAT=json

USER 10001:10001

EXPOSE 5000

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthcheck' % os.environ.get('PORT', '5000'), timeout=2)"]

CMD ["user-service"]
