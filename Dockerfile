# Image for the gateway and the worker processes (the Docker path; see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY processors processors
COPY schemas schemas
COPY storage storage
COPY ops ops
RUN pip install --no-cache-dir .
EXPOSE 3000
ENTRYPOINT ["meterly"]
CMD ["gateway"]
