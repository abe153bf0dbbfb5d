FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY api ./api
COPY worker ./worker
COPY core ./core
COPY metachat ./metachat
COPY sim ./sim
COPY cli ./cli
COPY migrations ./migrations
COPY alembic.ini ./
RUN pip install --no-cache-dir '.[flower]'
RUN useradd --create-home mcjobs && mkdir -p /var/run/mcjobs-metrics \
    && chown mcjobs /var/run/mcjobs-metrics
USER mcjobs
EXPOSE 8000
CMD ["mcjobs", "api", "--host", "0.0.0.0", "--port", "8000"]
