# syntax=docker/dockerfile:1
# Build stage: install the locked dependencies and the package into a virtualenv.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml constraints.txt README.md ./
COPY bot ./bot
COPY providers ./providers
COPY storage ./storage
RUN /opt/venv/bin/pip install -c constraints.txt .

# Runtime stage: no compilers, no sources, a non-root user.
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RUNCTL_HOST=0.0.0.0 \
    RUNCTL_PORT=3000 \
    RUNCTL_LOG_FORMAT=json \
    DATABASE_URL=sqlite:////data/runctl.db
RUN useradd --system --uid 10001 --home-dir /data --create-home runctl
COPY --from=build /opt/venv /opt/venv
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER runctl
WORKDIR /data
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"RUNCTL_PORT\",\"3000\")}/healthz', timeout=2)" || exit 1
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["runctl-bot", "serve"]
