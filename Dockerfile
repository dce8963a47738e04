# Two images from one Dockerfile: `--target api` (the API, webhook workers, the sweeper: no Blender) and
# `--target worker` (the same plus Debian's blender). Both run `bin/entrypoint api|worker|webhooks|sweep|manage
# ...` as user 10001; the worker image's `sandbox` role (Blender's sidecar in the worker task) starts as root to
# run each render as a uid of its own. The code under /app is root's: no process of the app can rewrite it.
# Tasks run with a read-only root filesystem and task volumes for /tmp (and, for workers, /sandbox), whose
# ownership and modes come from the directories declared below.

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
COPY manage.py ./
COPY bin ./bin
COPY renderproject ./renderproject
COPY jobs ./jobs
# collectstatic needs settings that production refuses without a real key: give it a throwaway one, which
# settings accept for collectstatic only (BUILD_SECRET_KEY): a container started with it stops.
RUN DJANGO_SECRET_KEY=collectstatic-only-not-used-at-runtime-0123456789abcdef RENDER_ENV=production \
    python manage.py collectstatic --noinput --verbosity 0
VOLUME ["/tmp"]
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["python", "-m", "jobs.worker.healthcheck"]
ENTRYPOINT ["/app/bin/entrypoint"]
CMD ["api"]

# --- worker: the api image plus Blender (Debian bookworm's package: Cycles on CPU, no OpenImageDenoise) and
# ffmpeg (bookworm's 5.1, with libx264 and libvpx: encode steps' MP4 and WebM; pinned to its 5.1 security updates).
# Both run sandboxed (jobs/sandbox/): in the task's `sandbox` container, each run as a uid of its own.
# /sandbox: the scene cache and the chunks' scratch directories, the worker's (0711: passable, not listable).
FROM api AS worker
USER 0:0
RUN apt-get update \
    && apt-get install -y --no-install-recommends blender=3.4.1+dfsg-2+b1 \
        ffmpeg=7:5.1.* \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /sandbox \
    && chown 10001:10001 /sandbox \
    && chmod 0711 /sandbox
VOLUME ["/sandbox"]
USER 10001:10001
ENV RENDER_ROLE=worker
CMD ["worker"]
