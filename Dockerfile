# Curvature Explorer: a CPU-only image for a teaching deployment.
#   docker build -t curvature-explorer .
#   docker run --rm -p 8501:8501 curvature-explorer
# The app alone runs its compute on a local Dask cluster (one single-threaded worker
# process per core). compose.yaml runs the same image as a Dask scheduler, workers
# (dask worker ... --preload explorer.server.preload) and the app:
#   docker compose up --build --scale worker=4
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 explorer
WORKDIR /app

# CPU wheel of torch first (the default PyPI wheel would bring CUDA libraries).
COPY requirements.txt .
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install -r requirements.txt

# Every Dask worker process runs one task on one thread. PYTHONPATH lets
# `dask worker` (whose sys.path does not hold the working folder) import explorer.
ENV OMP_NUM_THREADS=1 \
    PYTHONPATH=/app \
    EXPLORER_CACHE_DIR=/home/explorer/.cache/curvature-explorer/results

# The code belongs to root and is read-only for the app's user: a flaw in the app
# (or a plugin it runs) cannot rewrite the code every later session imports. The
# user writes only its home (the results cache) and the temporary folder.
COPY . .
RUN chmod -R a-w,a+rX .
USER explorer

EXPOSE 8501
# Not only "is the socket up": a fresh process loads the plugins and finishes a
# 2-step run within 20 s, as every worker must (a plugin that loops at import
# hangs every session while Streamlit's /_stcore/health still answers ok).
HEALTHCHECK --interval=60s --timeout=40s --start-period=60s --retries=3 \
  CMD ["python", "-m", "explorer.server.health", "--url", "http://127.0.0.1:8501/", "--timeout", "20"]

CMD ["python", "-m", "streamlit", "run", "app.py", "--server.port=8501", "--server.address=0.0.0.0", "--server.headless=true", "--server.fileWatcherType=none"]
