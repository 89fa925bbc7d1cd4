# Assent — two commands: `make run` (the demo) and `make test` (every test).
SHELL := bash
GEO_PKG  := @ip-location-db/geo-whois-asn-country-mmdb@2.3.2026061719
GEO_DB   := data/geo-whois-asn-country.mmdb
GO       ?= go

.PHONY: run test bench build deps geodb chromium strace widget-deps mailpit lint clean

build: bin/assent

bin/assent: $(shell find . -name '*.go' -not -path './node_modules/*') $(shell find widget -type f -not -path '*/node_modules/*') go.mod go.sum
	$(GO) build -o bin/assent ./cmd/assent

# The default country database, from its pinned npm package (npm updates of it
# have stopped, so the version never moves). `npm pack` fetches the tarball only.
geodb: $(GEO_DB)
$(GEO_DB):
	@mkdir -p data/.geo-tmp
	cd data/.geo-tmp && npm pack --silent $(GEO_PKG) >/dev/null
	tar -xzf data/.geo-tmp/*.tgz -C data/.geo-tmp
	cp data/.geo-tmp/package/geo-whois-asn-country.mmdb $(GEO_DB).tmp
	cp data/.geo-tmp/package/NRO_LICENSE data/GEO_LICENSE-NRO
	mv $(GEO_DB).tmp $(GEO_DB)
	rm -rf data/.geo-tmp

# Chromium from Debian's packages, for the browser tests.
chromium:
	@command -v chromium >/dev/null || { \
	  echo "installing chromium from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# strace from Debian's packages: the fail-stop tests inject real I/O errors
# (EIO, ENOSPC) into the running binary with it.
strace:
	@command -v strace >/dev/null || { \
	  echo "installing strace from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null; }

# The widget's dev tools (TypeScript, axe-core), pinned by widget/package-lock.json.
widget-deps: widget/node_modules/.installed
widget/node_modules/.installed: widget/package.json widget/package-lock.json
	cd widget && npm ci --no-audit --no-fund --silent
	touch $@

# Mailpit, a real SMTP server with a web mailbox, for the demo and the tests:
# built from source through the Go module proxy into bin/ (git ignores it).
MAILPIT_VERSION := v1.33.1
mailpit: bin/mailpit
bin/mailpit:
	GOBIN=$(CURDIR)/bin $(GO) install github.com/axllent/mailpit@$(MAILPIT_VERSION)

deps: geodb chromium strace widget-deps mailpit

# The demo: Mailpit beside the server (stopped with it), double opt-in on
# for the demo site, so a sign-up's confirmation mail shows in Mailpit.
DEMO_ADDR    ?= 8080
MAILPIT_SMTP ?= 1025
MAILPIT_HTTP ?= 8025
run: geodb bin/assent bin/mailpit
	@bin/mailpit --smtp 127.0.0.1:$(MAILPIT_SMTP) --listen 127.0.0.1:$(MAILPIT_HTTP) --quiet --disable-version-check & mp=$$!; \
	  trap 'kill $$mp 2>/dev/null' EXIT INT TERM; \
	  echo "mailbox (Mailpit): http://localhost:$(MAILPIT_HTTP)/"; \
	  ./bin/assent serve --demo --data data --geoip $(GEO_DB) --addr :$(DEMO_ADDR) \
	    --smtp 'smtp://127.0.0.1:$(MAILPIT_SMTP)?tls=none' --mail-from 'Assent demo <demo@assent.localhost>' \
	    --public-url http://localhost:$(DEMO_ADDR)

# gofmt, go vet and staticcheck (pinned, fetched through the Go module proxy).
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path '*/node_modules/*')); \
	  if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

test: deps lint
	cd widget && npx --no-install tsc --noEmit -p .
	cd widget && npx --no-install tsc --noEmit -p ../server/console
	./scripts/with-postgres $(GO) test -race -count=1 -timeout 30m ./...

bench: geodb
	./scripts/with-postgres $(GO) run ./cmd/benchreport -o docs/benchmarks.md

clean:
	rm -rf bin dist
