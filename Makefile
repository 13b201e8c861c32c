# batteryswap — common tasks. `make help` lists them.
GO ?= go
PKGS ?= ./...

.PHONY: help run demo build test test-short lint bench load-bookings fmt

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: ## run the server on the embedded default (SQLite + in-process broker)
	$(GO) run ./cmd/batteryswap

demo: ## serve a seeded demo network kept alive by a simulator (open http://localhost:8080/)
	$(GO) run ./cmd/batteryswap demo

build: ## build bin/batteryswap
	CGO_ENABLED=0 $(GO) build -o bin/batteryswap ./cmd/batteryswap

test: ## run every test with the race detector (PostgreSQL/Redis tests need TEST_DATABASE_URL/TEST_REDIS_URL)
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

test-short: ## run the tests without the browser and multi-process ones
	$(GO) test -short -count=1 $(PKGS)

lint: ## go vet, gofmt and staticcheck (fetched on first use)
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

bench: ## run the Go benchmarks
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

load-bookings: ## bsload bookings at 1, 8 and 64 clients on a fresh PostgreSQL database (docs/BENCHMARKS.md)
	scripts/bench-bookings.sh 1,8,64 10s

fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')
