# streamrec: one image, two entry points (`streamrec worker`, `streamrec api`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1 \
    STREAMREC_DATA_DIR=/data
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# The CPU build of torch first, so nothing pulls the CUDA one.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY streams streams
COPY recommender recommender
COPY models models
COPY api api
COPY streamrec streamrec
# The s3 extra: model versions in S3 (docker-compose.cluster.yml keeps them in MinIO).
RUN pip install --no-cache-dir ".[s3]" && useradd --create-home streamrec \
    && mkdir -p /data && chown streamrec /data
USER streamrec
VOLUME ["/data"]
ENTRYPOINT ["streamrec"]
CMD ["api"]
