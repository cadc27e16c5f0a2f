# xsyn: SYN-flood defence with XDP + netfilter SYNPROXY.
# Targets that touch the kernel (test, demo, bench) need root. ./quickstart demo|test (the README's
# quick start) installs make and the other packages first, as root or through sudo, then runs them.

# sudo resets PATH (secure_path), which usually lacks Go: find it where the Go installer puts it,
# and hand its directory down to what the tests run (they build the CLI).
GO      ?= $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go),go)
export PATH := $(dir $(GO)):$(PATH)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.DEFAULT_GOAL := help
.PHONY: help deps generate check-generated build test lint clean demo bench bench-full

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install build and test dependencies (Debian/Ubuntu, root)
	./deploy/install-deps.sh

GENPKGS   = ./loader/... $(if $(wildcard bench/gen.go),./bench/...)
GENERATED = loader/*_bpfel.go loader/*_bpfel.o $(wildcard bench/*_bpfel.go bench/*_bpfel.o)

generate: deps ## recompile the BPF programs (bpf2go) into the committed *_bpfel.{go,o}
	$(GO) generate $(GENPKGS)

check-generated: generate ## fail if the committed BPF objects differ from a fresh build
	@git diff --exit-code --stat -- $(GENERATED) || { echo "generated BPF objects out of date: run 'make generate' and commit"; exit 1; }

build: ## build bin/xsyn (static, no cgo, no clang needed)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/xsyn ./cmd/xsyn

# deploy/ is a module of its own (the Kubernetes and Prometheus API types its tests need stay out
# of xsyn's dependencies): go test ./... does not reach it, so it is run as well.
test: deps ## run every test: real namespaces, XDP, netfilter, and the deploy/ files (root)
	$(GO) test -count=1 -timeout 30m ./...
	cd deploy && $(GO) test -count=1 -timeout 10m ./...

lint: ## gofmt, go vet, tidy go.mod (both modules)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd deploy && $(GO) vet ./...
	@$(GO) mod tidy -diff && cd deploy && $(GO) mod tidy -diff || { echo "go.mod/go.sum not tidy: run 'go mod tidy' (and in deploy/)"; exit 1; }

demo: deps build ## lab demo: flood a protected server while real clients connect (root)
	$(GO) run ./cmd/xsyn-demo -xsyn bin/xsyn

bench: deps ## quick benchmark (under 2 minutes): every mode, IPv4 Linux-like SYNs; results, report, plots in bench/out (root)
	$(GO) run ./bench -duration 1s -family 4 -shape 74 -legit-levels 0,25,100 -legit-duration 2s -rounds 1 -stream-duration 1s

bench-full: deps ## full benchmark (about 7 minutes): both families and SYN shapes, five flood levels, 3 stream rounds (root)
	$(GO) run ./bench

clean: ## remove build outputs
	rm -rf bin bench/out

# --- The Debian package (deploy/deb/README.md) ---
# The version is VERSION made Debian-valid; the maintainer whoever builds it (git's user.name and
# user.email, as dch takes DEBFULLNAME and DEBEMAIL). Both can be set: make deb DEB_VERSION=1.0.
DEB_OUT        ?= bin
DEB_VERSION    ?= $(shell deploy/deb/debversion.sh '$(VERSION)')
DEB_MAINTAINER ?= $(shell e=$$(git config user.email); if [ -n "$$e" ]; then echo "$$(git config user.name) <$$e>"; else echo "xsyn builder <root@localhost>"; fi)
.PHONY: man deb

man: build ## man page bin/xsyn.8, written from bin/xsyn's --help (read it: man -l bin/xsyn.8)
	$(GO) run ./cmd/xsyn-man -xsyn bin/xsyn -date "$$(git log -1 --format=%cs 2>/dev/null)" -o bin/xsyn.8

# nfpm is pinned in deploy/deb/nfpm/go.mod. The units name /usr/local/sbin/xsyn, where a manual
# install puts it (deploy/systemd/README.md); a package installs to /usr/sbin.
deb: build man ## Debian package bin/xsyn_<version>_<arch>.deb (nfpm): binary, units, conffile, docs, man page
	$(GO) -C deploy/deb/nfpm build -o $(CURDIR)/bin/nfpm github.com/goreleaser/nfpm/v2/cmd/nfpm
	rm -rf bin/deb && mkdir -p bin/deb $(DEB_OUT)
	for u in xsyn@.service xsyn-exporter.service; do sed 's|/usr/local/sbin/xsyn|/usr/sbin/xsyn|g' deploy/systemd/$$u > bin/deb/$$u; done
	gzip -9n < bin/xsyn.8 > bin/deb/xsyn.8.gz
	{ cat LICENSE; printf '\nOn Debian systems, the GNU General Public License version 2 is in /usr/share/common-licenses/GPL-2.\n'; } > bin/deb/copyright
	DEB_VERSION='$(DEB_VERSION)' DEB_ARCH="$$($(GO) env GOARCH)" DEB_MAINTAINER='$(DEB_MAINTAINER)' \
	SOURCE_DATE_EPOCH="$$(git log -1 --format=%ct 2>/dev/null || date +%s)" \
		bin/nfpm package --config deploy/deb/nfpm.yaml --packager deb --target $(DEB_OUT)/
