# SPDX-License-Identifier: GPL-2.0
#
# Out-of-tree build of scst.ko.
#
#   make                 build against the cached test kernel (built on first use)
#   make KDIR=/path      build against another kernel built with CONFIG_RUST=y
#                        by the same rustc (and LLVM=1, as this Makefile passes)
#   make CLIPPY=1        build with clippy; warnings are errors (-Dwarnings)
#   make rustfmt         format the Rust sources; `make rustfmtcheck` only checks
#   make install         scst.ko into /lib/modules/<release>/updates (depmod run),
#                        scstadmin, the scst_user header and reference handlers,
#                        the init script and systemd unit, the directory of
#                        persistent reservation files (DESTDIR, PREFIX,
#                        INSTALL_MOD_PATH as usual); build with `make` first
#   make clean

# bindgen and the Rust toolchain, also when PATH lacks them (e.g. in CI).
export PATH := $(HOME)/.cargo/bin:$(PATH)

# Evaluated once (it checks the cache, and builds the kernel on first use).
ifeq ($(origin KDIR),undefined)
KDIR := $(shell $(CURDIR)/tools/testing/build-kernel)
endif

RUST_SOURCES = $(shell find $(CURDIR) -name '*.rs' -not -path '*/target/*' \
	-not -name 'bindings_generated.rs' -not -path '*/.git/*')

ifeq ($(CLIPPY),1)
SCST_CLIPPY := CLIPPY=1 KRUSTFLAGS=-Dwarnings
endif

all: modules

modules:
	@$(CURDIR)/tools/check-kernel $(KDIR)
	$(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=1 CONFIG_SCST=m $(SCST_CLIPPY) modules

clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=1 clean
	rm -f rust/bindings_generated.rs

# Where `make install` puts things.
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
BINDIR ?= $(PREFIX)/bin
INCLUDEDIR ?= $(PREFIX)/include
DOCDIR ?= $(PREFIX)/share/doc/scst-rs
SYSCONFDIR ?= /etc
UNITDIR ?= /lib/systemd/system
# Where the kernel keeps persistent reservations with APTPL (fixed, as SCST's).
PR_DIR = /var/lib/scst/pr
INSTALL_MOD_PATH ?= $(DESTDIR)

install: modules_install tools_install

# The kernel's own rule: updates/ of the kernel's module directory, then
# depmod, so that `modprobe scst` finds it.
modules_install:
	@test -f scst.ko || { echo "make install: build scst.ko first (make)" >&2; exit 1; }
	$(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=1 CONFIG_SCST=m \
		INSTALL_MOD_PATH=$(INSTALL_MOD_PATH) modules_install

# The user-space programs, rebuilt only when their sources changed.
SCSTADMIN_BIN := tools/scstadmin/target/release/scstadmin
HANDLER_BINS := tools/scst_user/target/release/scst-user-fileio \
	tools/scst_user/target/release/scst-user-tape

$(SCSTADMIN_BIN): $(shell find tools/scstadmin/src -name '*.rs') tools/scstadmin/Cargo.toml
	cargo build --release --quiet --manifest-path tools/scstadmin/Cargo.toml

$(HANDLER_BINS) &: $(shell find tools/scst_user/src -name '*.rs') tools/scst_user/Cargo.toml
	cargo build --release --quiet --manifest-path tools/scst_user/Cargo.toml

tools_install: $(SCSTADMIN_BIN) $(HANDLER_BINS)
	install -D -m 0755 $(SCSTADMIN_BIN) $(DESTDIR)$(SBINDIR)/scstadmin
	install -D -m 0755 tools/scst_user/target/release/scst-user-fileio $(DESTDIR)$(BINDIR)/scst-user-fileio
	install -D -m 0755 tools/scst_user/target/release/scst-user-tape $(DESTDIR)$(BINDIR)/scst-user-tape
	install -D -m 0644 scst_user/include/scst_user.h $(DESTDIR)$(INCLUDEDIR)/scst/scst_user.h
	install -D -m 0755 tools/scstadmin/init/scst $(DESTDIR)$(SYSCONFDIR)/init.d/scst
	install -D -m 0644 tools/scstadmin/init/scst.service $(DESTDIR)$(UNITDIR)/scst.service
	install -d -m 0700 $(DESTDIR)$(PR_DIR)
	install -d $(DESTDIR)$(DOCDIR)
	install -m 0644 Documentation/*.rst $(DESTDIR)$(DOCDIR)/

rustfmt:
	rustfmt --edition 2021 $(RUST_SOURCES)

rustfmtcheck:
	rustfmt --edition 2021 --check $(RUST_SOURCES)

.PHONY: all modules clean rustfmt rustfmtcheck install modules_install tools_install
