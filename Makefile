# cri-runtimed build, install and test entry points. `sudo make run` and
# `sudo make test` work on a fresh Debian machine.

SHELL       := /bin/bash
GO          ?= go
PREFIX      ?= /usr/local
BIN         := bin/cri-runtimed
SHIM_BIN    := bin/cri-runtimed-shim
PKG         := github.com/cri-runtimed/cri-runtimed
# VERSION must be semver: kubelet parses the runtime's version and shows
# cri-runtimed://Unknown for a bare commit hash (what `git describe
# --always` gives without tags). A tag wins; otherwise 0.0.0-dev+<commit>.
VERSION     ?= $(shell git describe --tags --dirty 2>/dev/null | sed 's/^v//' | grep . || echo "0.0.0-dev+$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)")
REVISION    ?= $(shell git rev-parse --verify -q HEAD 2>/dev/null || echo unknown)
LDFLAGS     := -s -w -extldflags=-static -X $(PKG)/pkg/version.Version=$(VERSION) -X $(PKG)/pkg/version.Revision=$(REVISION)
CONFIG      ?= /etc/cri-runtimed/config.toml
E2E_TIMEOUT ?= 45m
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Debian packages the daemon and its tests use. Checked with dpkg first so
# the target is quick when everything is there.
DEB_PACKAGES := gcc libc6-dev runc crun containernetworking-plugins docker-registry busybox-static \
	iptables iproute2 skopeo umoci file ca-certificates e2fsprogs mount criu

# The built-in pause runs from a C constructor, so the daemon is a cgo
# binary; it is linked statically because it also runs inside the pause
# container's empty rootfs.
export CGO_ENABLED := 1
BUILD_TAGS  := netgo,osusergo,nri_no_wasm

.PHONY: all deps guest-deps guest-image build test unit e2e guest-smoke test-guest lint run install clean cni-config kubelet e2e-kubelet cluster-bins test-cluster conformance-bins cluster-conformance

all: build

# The guest suite (test/guest) boots a Debian guest with systemd and
# cgroup v2 under qemu's software emulation; these build and run it.
GUEST_PACKAGES := qemu-system-x86 debootstrap e2fsprogs zstd

# apt-install installs the Debian packages of $(1) that are missing.
define apt-install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call apt-install,$(DEB_PACKAGES))

guest-deps:
	$(call apt-install,$(GUEST_PACKAGES))

# The shim has a binary of its own (cmd/cri-runtimed-shim): one runs per
# pod, and it does not pay the daemon's package initialisation (gRPC,
# protobuf, CRI API). It needs no cgo. The daemon starts shims from it when
# it sits beside the daemon and reports the same build.
build:
	$(GO) build -trimpath -tags $(BUILD_TAGS) -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/cri-runtimed
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(BUILD_TAGS) -ldflags '$(LDFLAGS)' -o $(SHIM_BIN) ./cmd/cri-runtimed-shim

unit:
	$(GO) vet ./...
	$(GO) test -count=1 ./...

lint:
	$(GO) vet ./... ./test/...
	$(GO) vet -tags e2e ./test/...
	$(GO) vet -tags e2e,kubelet ./test/e2e/kubelet/...
	test -z "$$(gofmt -l cmd pkg test)" || { gofmt -l cmd pkg test; exit 1; }
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags e2e ./test/...
	$(GO) run $(STATICCHECK) -tags e2e,kubelet ./test/e2e/kubelet/...

e2e: build
	CRI_RUNTIMED_BIN=$(CURDIR)/$(BIN) $(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -v ./test/e2e/... 2>&1 | tee e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|^\s+\S+_test.go' ; exit $${PIPESTATUS[0]}

# guest-smoke: a short part of the guest suite (systemd
# driver pod lifecycle, OOM kill and stats on cgroup v2, restarting the
# systemd unit), the last stage of `make test`; test-guest: all of it
# (both drivers, crun, swap, kubelet, bench). Neither skips: a machine
# that cannot install qemu or build the image fails the target. The
# smoke's timeout is generous (a loaded machine slows the emulated guest
# several times) yet leaves `make test` inside CI's 90 minutes.
GUEST_SMOKE_TIMEOUT ?= 2400
# guest-image builds the guest's image (test/guest/image.sh) unless it
# is cached; run.sh would build it too, on its first boot.
guest-image: guest-deps
	test/guest/image.sh >/dev/null

guest-smoke: build guest-deps
	GUEST_TIMEOUT=$(GUEST_SMOKE_TIMEOUT) test/guest/run.sh smoke

# The guest runs the newest kubelet release on cgroup v2 with systemd.
GUEST_KUBELET_VERSION ?= v1.37.2

GUEST_FULL_TIMEOUT ?= 7200
# The checkpoint-crictl stage's crictl (cri-tools are not part of this
# repository); none: the stage says so and is left out.
GUEST_CRICTL ?= $(shell command -v crictl)

test-guest: build guest-deps
	$(MAKE) kubelet KUBELET_VERSIONS=$(GUEST_KUBELET_VERSION)
	GUEST_TIMEOUT=$(GUEST_FULL_TIMEOUT) GUEST_KUBELET=$(KUBELET_CACHE)/$(GUEST_KUBELET_VERSION)/kubelet \
		GUEST_CRICTL=$(GUEST_CRICTL) test/guest/run.sh full

# On a fresh machine the guest image (mostly downloads and dpkg) builds
# beside the kubelets (mostly compiling) first; with both cached this step
# does nothing. What is tested, and in what order, is unchanged.
test: deps
	$(MAKE) -j2 guest-image kubelet
	$(MAKE) unit e2e e2e-kubelet guest-smoke

# Kubelets for the kubelet suite, built from the k8s.io/kubernetes module
# pinned in test/tools/kubernetes/<version> (test/tools/kubernetes/pin.sh
# makes one) into a cache shared by every checkout. The first build of a
# release takes ~6 minutes on two quiet cores; a cached binary is used as
# is. v1.34 is the oldest release we support; v1.37 the newest release,
# which still starts on a cgroup v1 node with failCgroupV1: false (the
# suite sets it) and is what the cgroup v2 guest runs.
KUBELET_VERSIONS ?= v1.34.4 v1.37.2
KUBELET_CACHE    ?= /var/cache/cri-runtimed-test/kubelet
KUBELET_BINS     := $(foreach v,$(KUBELET_VERSIONS),$(KUBELET_CACHE)/$(v)/kubelet)

kubelet: $(KUBELET_BINS)

# k8s-build VERSION,PACKAGE,OUTPUT builds a Kubernetes program from the
# k8s.io/kubernetes module pinned in test/tools/kubernetes/VERSION. The
# version stamps are those of upstream's hack/lib/version.sh, so the
# program reports its release (node status, /metrics, kubeadm's default
# kubernetesVersion) rather than v0.0.0. Built only when missing (a
# release's go.mod never changes once pinned); the lock lets two checkouts
# ask for the same binary at once, and serializes the builds of one
# release (each takes most of two cores).
define k8s-build
	@mkdir -p $(dir $(3))
	cd test/tools/kubernetes/$(1) && flock $(dir $(3)).build.lock sh -c '\
		[ -x $(3) ] && exit 0; \
		v=$(1); minor=$${v#v1.}; minor=$${minor%%.*}; \
		x="-X k8s.io/component-base/version.gitVersion=$$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$$minor -X k8s.io/component-base/version.gitTreeState=clean"; \
		x="$$x -X k8s.io/client-go/pkg/version.gitVersion=$$v -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$$minor -X k8s.io/client-go/pkg/version.gitTreeState=clean"; \
		CGO_ENABLED=0 $(GO) build -trimpath -tags selinux,notest,grpcnotrace -ldflags "-s -w $$x" -o $(3).tmp $(2) && mv $(3).tmp $(3)'
endef

$(KUBELET_CACHE)/%/kubelet:
	$(call k8s-build,$*,k8s.io/kubernetes/cmd/kubelet,$@)

# The cluster test (make test-cluster, test/cluster): kubeadm's control
# plane, kube-proxy and the clients, built from the same pinned module as
# the kubelet of the same release, into a cache shared by every checkout.
CLUSTER_VERSION  ?= v1.37.2
CLUSTER_CACHE    ?= /var/cache/cri-runtimed-test/cluster
CLUSTER_DIR      := $(CLUSTER_CACHE)/$(CLUSTER_VERSION)
CLUSTER_K8S_BINS := $(addprefix $(CLUSTER_DIR)/,kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)

$(CLUSTER_K8S_BINS):
	$(call k8s-build,$(CLUSTER_VERSION),k8s.io/kubernetes/cmd/$(@F),$@)

# etcd and CoreDNS from their own tool modules (test/tools/etcd,
# test/tools/coredns), at the versions this kubeadm deploys.
$(CLUSTER_DIR)/etcd:
	@mkdir -p $(@D)
	cd test/tools/etcd && flock $(@D)/.build.lock sh -c '[ -x $@ ] && exit 0; \
		CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $@.tmp go.etcd.io/etcd/server/v3 && mv $@.tmp $@'

$(CLUSTER_DIR)/coredns:
	@mkdir -p $(@D)
	cd test/tools/coredns && flock $(@D)/.build.lock sh -c '[ -x $@ ] && exit 0; \
		CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $@.tmp github.com/coredns/coredns && mv $@.tmp $@'

cluster-bins: $(CLUSTER_K8S_BINS) $(CLUSTER_DIR)/etcd $(CLUSTER_DIR)/coredns $(KUBELET_CACHE)/$(CLUSTER_VERSION)/kubelet

# The conformance run (make cluster-conformance): e2e.test with the
# sig-node specs only (test/tools/kubernetes/<v>/conformance), the ginkgo
# CLI that runs it in parallel, agnhost, the specs' test image, and nnp,
# the nonewprivs image's program.
CONFORMANCE_BINS := $(addprefix $(CLUSTER_DIR)/,e2e.test ginkgo agnhost nnp)

$(CLUSTER_DIR)/agnhost:
	$(call k8s-build,$(CLUSTER_VERSION),k8s.io/kubernetes/test/images/agnhost,$@)

$(CLUSTER_DIR)/nnp:
	$(call k8s-build,$(CLUSTER_VERSION),k8s.io/kubernetes/test/images/nonewprivs,$@)

$(CLUSTER_DIR)/ginkgo:
	$(call k8s-build,$(CLUSTER_VERSION),github.com/onsi/ginkgo/v2/ginkgo,$@)

# The tags are the programs' (k8s-build), as upstream's hack/lib/golang.sh
# builds its test binaries: without notest, apimachinery's meta/v1 (a
# !notest file) differs, and everything above it, client-go and apiserver
# included, misses the build cache the cluster programs filled (505 stale
# packages instead of 100). Unlike the programs, it is built again when
# the conformance package or the module is newer (which specs it holds).
E2E_TEST_SRC := $(addprefix test/tools/kubernetes/$(CLUSTER_VERSION)/,conformance/e2e_test.go go.mod)
$(CLUSTER_DIR)/e2e.test: $(E2E_TEST_SRC)
	@mkdir -p $(@D)
	cd test/tools/kubernetes/$(CLUSTER_VERSION) && flock $(@D)/.build.lock sh -c '[ -x $@ ] && [ $@ -nt conformance/e2e_test.go ] && [ $@ -nt go.mod ] && exit 0; \
		v=$(CLUSTER_VERSION); minor=$${v#v1.}; minor=$${minor%%.*}; \
		x="-X k8s.io/component-base/version.gitVersion=$$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$$minor -X k8s.io/component-base/version.gitTreeState=clean"; \
		CGO_ENABLED=0 $(GO) test -c -trimpath -tags selinux,notest,grpcnotrace -ldflags "-s -w $$x" -o $@.tmp ./conformance && mv $@.tmp $@'

conformance-bins: $(CONFORMANCE_BINS)

# cluster-conformance: the sig-node conformance specs against a cluster
# over the daemon (CLUSTER_RUNTIME=containerd: over the containerd peer);
# see test/cluster/conformance.sh for the focus and the parallelism.
cluster-conformance: deps build cluster-bins conformance-bins
	$(call apt-install,$(CLUSTER_PACKAGES) containerd)
	CRI_RUNTIMED_BIN=$(CURDIR)/$(BIN) CLUSTER_VERSION=$(CLUSTER_VERSION) test/cluster/conformance.sh

# test-cluster: a kubeadm cluster on this host over the daemon, driven
# with kubectl (test/cluster/run.sh; CLUSTER_SMOKE=1: bring-up, one
# Deployment, reset).
CLUSTER_PACKAGES := conntrack curl docker-registry busybox-static iptables

test-cluster: deps build cluster-bins
	$(call apt-install,$(CLUSTER_PACKAGES))
	CRI_RUNTIMED_BIN=$(CURDIR)/$(BIN) CLUSTER_VERSION=$(CLUSTER_VERSION) test/cluster/run.sh

# The kubelet suite (test/e2e/kubelet) against each kubelet of
# KUBELET_VERSIONS, one after the other: a host runs one kubelet at a time.
KUBELET_E2E_TIMEOUT ?= 30m
e2e-kubelet: build kubelet
	@set -o pipefail; for v in $(KUBELET_VERSIONS); do \
		echo "=== kubelet $$v"; \
		CRI_RUNTIMED_BIN=$(CURDIR)/$(BIN) CRI_RUNTIMED_KUBELET=$(KUBELET_CACHE)/$$v/kubelet \
			$(GO) test -tags e2e,kubelet -count=1 -parallel 8 -timeout $(KUBELET_E2E_TIMEOUT) -v ./test/e2e/kubelet/ 2>&1 | tee e2e-kubelet-$$v.log | \
			grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|^\s+\S+_test.go' || exit 1; \
	done

CNI_CONF_DIR ?= /etc/cni/net.d

run: deps build cni-config
	@mkdir -p /etc/cri-runtimed/certs.d
	@[ -f $(CONFIG) ] || ./$(BIN) config default > $(CONFIG)
	./$(BIN) --config $(CONFIG)

# cni-config installs the default network (deploy/cni) only where no CNI
# config exists yet: a cluster's own CNI plugin takes precedence.
cni-config:
	@mkdir -p $(CNI_CONF_DIR)
	@if ! ls $(CNI_CONF_DIR)/*.conf $(CNI_CONF_DIR)/*.conflist $(CNI_CONF_DIR)/*.json >/dev/null 2>&1; then \
		install -m 0644 deploy/cni/10-cri-runtimed.conflist $(CNI_CONF_DIR)/; \
		echo "installed the default CNI network in $(CNI_CONF_DIR)"; \
	fi

# NOBUILD=1 installs bin/cri-runtimed as it is, where there is no Go
# toolchain (the test guest).
install: $(if $(NOBUILD),,build) cni-config
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/cri-runtimed
	install -D -m 0755 $(SHIM_BIN) $(DESTDIR)$(PREFIX)/bin/cri-runtimed-shim
	install -d -m 0755 $(DESTDIR)/etc/cri-runtimed/certs.d
	[ -f $(DESTDIR)$(CONFIG) ] || ./$(BIN) config default > $(DESTDIR)$(CONFIG)
	# The preflight of the installed binary and config (not when staging
	# into a DESTDIR for another machine).
	[ -n "$(DESTDIR)" ] || $(PREFIX)/bin/cri-runtimed --config $(CONFIG) check
	if [ -d /run/systemd/system ]; then \
		install -D -m 0644 deploy/cri-runtimed.service $(DESTDIR)/etc/systemd/system/cri-runtimed.service; \
		systemctl daemon-reload; \
		echo "enable with: systemctl enable --now cri-runtimed"; \
	else \
		echo "systemd is not running: start $(PREFIX)/bin/cri-runtimed yourself"; \
	fi

clean:
	rm -rf bin e2e.log e2e-kubelet-*.log guest-out cluster-out
