# syntax=docker/dockerfile:1
# streamsvc worker / Iceberg sink image: multi-stage, slim, non-root. The entrypoint is the `streamsvc`
# console script, the same command the tests run (`python -m streamsvc.cli.main` = `streamsvc`).
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/streamsvc
COPY pyproject.toml README.md ./
COPY streamsvc ./streamsvc
RUN /opt/streamsvc/bin/pip install --no-cache-dir .

FROM python:3.11.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin streamsvc
COPY --from=build /opt/streamsvc /opt/streamsvc
COPY topologies /app/topologies
COPY schemas /app/schemas
ENV PATH=/opt/streamsvc/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STREAMSVC_HOME=/tmp/streamsvc \
    STREAMSVC_METRICS_PORT=9400
WORKDIR /app
USER 10001
EXPOSE 9400
ENTRYPOINT ["streamsvc"]
CMD ["run", "/app/topologies/demo_validation.py"]
