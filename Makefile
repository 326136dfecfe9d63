# assetgen — the two commands: `make run` and `make test`.
GO ?= go

.PHONY: run test vet bench load build fuzz soak openapi

## run: the whole stack locally (embedded emulators, dry-run generator) on $PORT (8080)
run:
	$(GO) run ./functions/cmd/local

# scripts/ci-terraform.sh arguments: by default the terraform plan tests run
# when the offline validator is there and are reported as skipped when not;
# CI sets TERRAFORM_TESTS= to require them.
TERRAFORM_TESTS ?= --if-available

## test: every test, with the race detector, then the terraform plan tests
test: vet
	$(GO) test -race -count=1 ./...
	scripts/ci-terraform.sh $(TERRAFORM_TESTS)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

## soak: concurrent live batches under storage faults, duplicate and killed
## deliveries; checks model work against money to the micro (ASSETGEN_SOAK_SEED repeats a run)
soak:
	ASSETGEN_SOAK=1 $(GO) test -race -count=1 -run='^TestSoak$$' -v ./functions/cmd/local/

## bench: the benchmarks whose numbers docs/PERFORMANCE.md records
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./...

## load: 300 images against a running stack (BASE_URL, default the local one)
load:
	scripts/test-100-rows.sh $(BASE_URL)

## build: every binary
build:
	$(GO) build ./...

## fuzz: the request decoder for a minute
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecodeValidate -fuzztime=60s ./shared/batch/

## openapi: copy the OpenAPI document (shared/openapi/openapi.json, the one served) to docs/openapi.json
openapi:
	$(GO) generate ./shared/openapi/
