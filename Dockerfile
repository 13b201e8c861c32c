# batteryswap: one static binary on a distroless, non-root base.
#
#   docker build -t batteryswap .
#   docker run -p 8080:8080 -e JWT_SECRET=... -v batteryswap-data:/data batteryswap
#
# With no DATABASE_URL the server uses the embedded SQLite file batteryswap.db
# in its working directory, /data, which belongs to the non-root user (mount a
# volume there to keep it). compose.yaml runs two instances on PostgreSQL and
# Redis behind nginx.

# RUN --mount needs BuildKit: the default builder since Docker 23, and compose's.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The SQLite driver is pure Go, so the binaries are static (CGO_ENABLED=0).
# deploy/healthcheck is the container's health probe: the runtime image has
# no shell or curl.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/batteryswap ./cmd/batteryswap && \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/healthcheck ./deploy/healthcheck && \
    mkdir -p /out/data

# static-debian12 has CA certificates, tzdata and /etc/passwd with the
# nonroot user (uid 65532); nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/batteryswap /batteryswap
COPY --from=build /out/healthcheck /healthcheck
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
USER nonroot:nonroot
EXPOSE 8080
# /readyz: 200 when the database and the broker answer. The probe reads ADDR
# like the server does.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/healthcheck"]
ENTRYPOINT ["/batteryswap"]
CMD ["serve"]
