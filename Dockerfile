# The local API image for docker compose (Lambda deploys through SAM instead: see infra/).
FROM python:3.12-slim
ENV UV_PYTHON_DOWNLOADS=never PYTHONUNBUFFERED=1
WORKDIR /app
RUN pip install --no-cache-dir uv
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
RUN uv sync --locked --no-dev --extra server
COPY local ./local
RUN uv run --no-sync python local/artifacts.py --dest /app/models && rm -rf /app/.local/downloads
ENV SEMCACHE_MODEL_DIR=/app/models
EXPOSE 8000
CMD ["uv", "run", "--no-sync", "python", "local/run.py"]
