# syntax=docker/dockerfile:1
# Stagehand's worker and CLI in one image (docker-compose.yaml runs the
# worker from it; `docker run --entrypoint stagehand ...` gives the CLI).

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
# Dependencies first, so editing Go code does not re-download modules.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: no libc coupling between the builder and the runtime image.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/stagehand-worker ./worker \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/stagehand ./starter

# Debian slim rather than distroless: activities run real tools (git for
# merges, argv commands from runbooks, pg_dump/pg_restore and
# mariadb-dump/mariadb for db.backup and db.restore) and talk TLS to
# clusters and registries, so the image needs them and CA certificates.
# The client versions must be at least the servers' (pg_dump refuses a newer
# server): bookworm ships PostgreSQL 15 and MariaDB 10.11 clients.
FROM debian:12.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git postgresql-client-15 mariadb-client \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home stagehand
COPY --from=build /out/stagehand-worker /out/stagehand /usr/local/bin/
COPY config/ /config/
USER stagehand
ENTRYPOINT []
CMD ["stagehand-worker", "--config", "/config/docker.yaml"]
