# ftl build, set-up and tests. Everything runs as root on Debian 12.
#   make          build bin/ftl (Go) and bin/libftl.so (the C shim)
#   make deps     install every Debian package the project and its tests need
#   make demo     deps + build + the main job (see README)
#   make test     deps + build + lint + every test (what CI runs)
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
GO      ?= go
CC      ?= gcc
CFLAGS  ?= -O2 -g -Wall -Wextra -Wno-unused-parameter
TOOLS   := $(CURDIR)/bin/tools
STATICCHECK_VERSION := v0.8.2

DEB_PACKAGES := gcc make libc6-dev iproute2 iptables procps psmisc \
	memcached redis-server redis-tools nginx-light libmemcached-tools \
	wrk sqlite3 libsqlite3-dev curl netcat-openbsd strace

GO_SOURCES   := $(shell find . -name '*.go' -not -path './bin/*') go.mod go.sum
SHIM_SOURCES := $(wildcard shim/*.c shim/*.h)

.PHONY: all deps build lint test gotest demo clean
all: build
build: bin/ftl bin/libftl.so

bin/ftl: $(GO_SOURCES)
	$(GO) build -o $@ ./cmd/ftl

bin/libftl.so: $(SHIM_SOURCES)
	@mkdir -p bin
	$(CC) $(CFLAGS) -fPIC -shared -fvisibility=hidden -o $@ $(filter %.c,$(SHIM_SOURCES)) -ldl -lpthread

# deps installs only what is missing, so a second run costs a few dpkg queries.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$(echo $$missing | tr '\n' ' ')"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "make deps: all Debian packages present"; fi
	@test -x $(TOOLS)/staticcheck || GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(TOOLS)/staticcheck ./...

gotest: build
	FTL_BIN=$(CURDIR)/bin/ftl FTL_SHIM=$(CURDIR)/bin/libftl.so $(GO) test -count=1 -timeout 60m ./...

test: deps build lint gotest

demo: deps build
	bash tests/demo.sh

clean:
	rm -rf bin
