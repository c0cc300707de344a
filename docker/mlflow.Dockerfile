# syntax=docker/dockerfile:1.7
#
# The MLflow tracking server of an hpsearch deployment: PostgreSQL backend store (psycopg 3),
# artifacts proxied to S3 / MinIO (boto3), MLflow's basic-auth app available (mlflow[auth]).
# The pins match pyproject.toml, so the server and the hpsearch clients speak the same MLflow.
#   docker build -f docker/mlflow.Dockerfile -t hpsearch-mlflow:3.17.2 .
FROM python:3.11.14-slim-bookworm

RUN pip install --no-cache-dir "mlflow[auth]==3.17.2" "psycopg[binary]==3.3.9" "boto3==1.44.5" \
    && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin mlflow \
    && install -d -o 10001 -g 10001 /home/mlflow/auth
USER 10001:10001
WORKDIR /home/mlflow
ENV MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import urllib.request as u, urllib.error as e\ntry: u.urlopen('http://127.0.0.1:5000/health', timeout=4)\nexcept e.HTTPError as x: raise SystemExit(x.code not in (401, 403))"]
# The store and artifact arguments come from compose.yaml / the Kubernetes Deployment.
ENTRYPOINT ["mlflow", "server"]
CMD ["--host", "0.0.0.0", "--port", "5000"]
