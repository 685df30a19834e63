# syntax=docker/dockerfile:1.7
# The MLflow tracking server of the stack: the official image at the MLflow version of uv.lock
# (clients and server agree), plus the PostgreSQL driver of its backend store and boto3 for its S3
# artifact store (MinIO), at the versions of uv.lock; tests/deploy/test_container_files.py checks
# that these pins follow the lockfile. Build from the repository root:
#   docker build -f deploy/mlflow.Dockerfile -t cncwear-mlflow .

ARG MLFLOW_IMAGE=ghcr.io/mlflow/mlflow:v3.17.2

FROM ${MLFLOW_IMAGE}
RUN pip install --no-cache-dir "psycopg[binary]==3.3.9" boto3==1.44.8 \
    && groupadd --system --gid 10001 mlflow \
    && useradd --system --uid 10001 --gid mlflow --home-dir /home/mlflow --create-home mlflow
USER 10001:10001
WORKDIR /home/mlflow
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
