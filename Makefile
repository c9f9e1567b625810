# fstrace — one command installs everything (as root, Debian 12 / Ubuntu 22.04, 24.04).
#   make run    install, then start `fstrace top`
#   make test   install, then the whole test suite
SHELL := /bin/bash
PY    := /usr/bin/python3
VENV  := .venv
KREL  := $(shell uname -r)
# gcc, libc6-dev and python3-dev build the compiled stream formatter (bpftools/fastpath, cffi) at pip install.
APT_PACKAGES := python3-bpfcc bpfcc-tools libbpfcc python3-venv python3-pip python3-dev gcc libc6-dev tmux strace rsync man-db
# Only `make test` installs these, so `make run` never brings a docker daemon to a host that had none:
# chromium checks the report's pictures headless; podman, runc, catatonit, docker.io, containerd and
# busybox-static run real containers offline (tests/privileged/test_containers.py); python3-fusepy
# runs a filesystem slowed on purpose (tests/privileged/slowfs.py, test_latency.py).
TEST_APT_PACKAGES := chromium podman runc catatonit docker.io containerd busybox-static python3-fusepy
PYTEST_ARGS ?=

.PHONY: install deps test-deps apt headers venv run test test-unit bench bench-quick clean

install: deps headers venv

deps:
	@$(MAKE) -s apt PACKAGES="$(APT_PACKAGES)"

test-deps:
	@$(MAKE) -s apt PACKAGES="$(TEST_APT_PACKAGES)"

apt:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make install: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Headers for the running kernel; where the distribution has none (custom
# kernels), its generic headers, linked in and announced.  They only let BCC
# compile: struct offsets come from the kernel's BTF.
headers:
	@if [ -e /lib/modules/$(KREL)/build/include ]; then exit 0; fi; \
	if apt-cache show linux-headers-$(KREL) >/dev/null 2>&1; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-headers-$(KREL); exit 0; fi; \
	. /etc/os-release; \
	if [ "$$ID" = ubuntu ]; then generic=linux-headers-generic; flavour=generic; else generic=linux-headers-amd64; flavour=amd64; fi; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$generic; \
	build=$$(ls -d /usr/src/linux-headers-*-$$flavour | sort -V | tail -1); \
	common=$${build%-$$flavour}-common; \
	mkdir -p /lib/modules/$(KREL); \
	ln -sfn $$build /lib/modules/$(KREL)/build; \
	if [ -d $$common ]; then ln -sfn $$common /lib/modules/$(KREL)/source; fi; \
	echo "################################################################################"; \
	echo "# WARNING: no headers package for kernel $(KREL)."; \
	echo "# Linked $$build instead: BCC compiles with them; every struct offset"; \
	echo "# fstrace reads comes from the running kernel's BTF, so all backends work."; \
	echo "################################################################################"

$(VENV)/.installed: pyproject.toml setup.py bpftools/fastpath/build.py bpftools/fastpath/fastpath.c bpftools/fastpath/fastpath.h bpf/fstrace.h
	@[ -x $(VENV)/bin/python ] || $(PY) -m venv --system-site-packages $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

run: install
	$(VENV)/bin/fstrace top

# The whole suite: unit tests and the root/BPF tests on the host's kernel,
# then the fsnotify backends' kernel matrix (Debian's kernels under qemu,
# about 11 minutes here once the kernels are installed; the 6.12 guest then
# starts systemd and runs the systemd checks, about 6 minutes more).
test: install test-deps
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS) tests
	$(VENV)/bin/python tests/kernels/run.py

test-unit: venv
	$(VENV)/bin/python -m pytest -q tests/unit

bench: install
	$(VENV)/bin/python bench/run.py

bench-quick: install
	$(VENV)/bin/python bench/run.py --quick

include tests/kernels/Makefile.inc

clean:
	rm -rf $(VENV) build *.egg-info bench/build
