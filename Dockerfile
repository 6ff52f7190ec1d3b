# boocode-gateway: slim, non-root, registry and settings on a bind-mounted /data.
#   docker build -t boocode-gateway .
#   docker run -p 9502:9502 -v "$PWD/config:/data" -e GATEWAY_API_KEYS=change-me boocode-gateway
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install . \
 && useradd --system --uid 10001 --no-create-home --home-dir /data gateway \
 && mkdir -p /data && chown gateway:gateway /data

USER gateway
ENV LLAMA_PROVIDERS_PATH=/data/llama-providers.json \
    GATEWAY_DATA_DIR=/data \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=9502
VOLUME ["/data"]
EXPOSE 9502
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9502/health', timeout=2)"]
CMD ["boocode-gateway", "serve"]
