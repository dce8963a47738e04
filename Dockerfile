# Two images from one Dockerfile: `--target api` (the API, webhook workers, the sweeper: no Blender) and `--target worker`
# (the same plus Debian's blender). Both run `bin/entrypoint api|worker|webhooks|sweep|manage ...` as user 10001.

# --- build: a virtualenv with the pinned runtime requirements ----------------------------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-compile -r /tmp/requirements.txt

# --- api: no compilers, no pip cache, a non-root user ------------------------------------------------
FROM python:3.11-slim-bookworm AS api
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=renderproject.settings \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    RENDER_ENV=production \
    RENDER_ROLE=api
RUN groupadd --system --gid 10001 render && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin render
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --chown=render:render manage.py ./
COPY --chown=render:render bin ./bin
COPY --chown=render:render renderproject ./renderproject
COPY --chown=render:render jobs ./jobs
# collectstatic needs settings that production refuses without a real key: give it a throwaway one.
RUN DJANGO_SECRET_KEY=collectstatic-only-not-used-at-runtime-0123456789abcdef RENDER_ENV=production \
    python manage.py collectstatic --noinput --verbosity 0
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["python", "-m", "jobs.worker.healthcheck"]
ENTRYPOINT ["/app/bin/entrypoint"]
CMD ["api"]

# --- worker: the api image plus Blender (Debian bookworm's package: Cycles on CPU, no OpenImageDenoise).
# Blender runs as the same unprivileged user, in a scratch directory per chunk (jobs/renderers/blender.py).
FROM api AS worker
USER 0:0
RUN apt-get update \
    && apt-get install -y --no-install-recommends blender=3.4.1+dfsg-2+b1 \
    && rm -rf /var/lib/apt/lists/*
USER 10001:10001
ENV RENDER_ROLE=worker
CMD ["worker"]
