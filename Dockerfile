# One image for every role; the role is the command (deploy/entrypoint.sh):
#   web | pipeline | train | triton | migrate
# Two targets: `app` (web, pipeline consumers, the bundled CPU Triton) and `train` (the same,
# with the training extra: only the training host needs torch and TRL).
#   docker build --target app -t shaping:app .
#   docker build --target train -t shaping:train .
# docs/deploy.md: the roles, what each needs, the compose file.

FROM python:3.11-slim-bookworm AS app
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    DEBUG=0
# A user of its own (no login, no home outside /app) and the shared volume's mount point.
RUN groupadd --system --gid 10001 shaping \
    && useradd --system --uid 10001 --gid shaping --home-dir /app --shell /usr/sbin/nologin shaping \
    && mkdir -p /data \
    && chown shaping:shaping /data
WORKDIR /app
COPY pyproject.toml README.md manage.py ./
COPY shaping_core ./shaping_core
COPY shaping_web ./shaping_web
COPY labelling ./labelling
COPY inference ./inference
COPY templates ./templates
COPY static ./static
COPY triton_models ./triton_models
COPY deploy/entrypoint.sh /usr/local/bin/shaping-role
# The project itself, from this checkout; its dependencies' ranges are pyproject.toml's.
# hadolint ignore=DL3013
RUN pip install ".[prod]" \
    && chmod 0755 /usr/local/bin/shaping-role
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000 8001
ENTRYPOINT ["shaping-role"]
CMD ["web"]

FROM app AS train
USER 0
# hadolint ignore=DL3013
RUN pip install ".[prod,train]"
USER 10001:10001
CMD ["train"]
