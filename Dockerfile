# Image for the gateway and the worker processes (the Docker path; see docker-compose.yml).
# Installs exactly uv.lock's runtime packages, as ./ops/run.sh does.
FROM python:3.11-slim
WORKDIR /app
COPY ops/requirements/uv.txt ops/requirements/uv.txt
RUN pip install --no-cache-dir --require-hashes -r ops/requirements/uv.txt
COPY pyproject.toml uv.lock README.md ./
COPY gateway gateway
COPY processors processors
COPY schemas schemas
COPY storage storage
COPY ops ops
RUN uv sync --frozen --no-dev --no-editable
ENV PATH="/app/.venv/bin:$PATH"
EXPOSE 3000
ENTRYPOINT ["meterly"]
CMD ["gateway"]
