# SPDX-License-Identifier: GPL-2.0
#
# Out-of-tree build of scst.ko.
#
#   make                 build against the cached test kernel (built on first use)
#   make KDIR=/path      build against another kernel built with CONFIG_RUST=y
#                        by the same rustc (and LLVM=1, as this Makefile passes)
#   make CLIPPY=1        build with clippy; warnings are errors (-Dwarnings)
#   make rustfmt         format the Rust sources; `make rustfmtcheck` only checks
#   make clean

# bindgen and the Rust toolchain, also when PATH lacks them (e.g. in CI).
export PATH := $(HOME)/.cargo/bin:$(PATH)

KDIR ?= $(shell $(CURDIR)/tools/testing/build-kernel)

RUST_SOURCES = $(shell find $(CURDIR) -name '*.rs' -not -path '*/target/*' \
	-not -name 'bindings_generated.rs' -not -path '*/.git/*')

ifeq ($(CLIPPY),1)
SCST_CLIPPY := CLIPPY=1 KRUSTFLAGS=-Dwarnings
endif

all: modules

modules:
	$(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=1 CONFIG_SCST=m $(SCST_CLIPPY) modules

clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=1 clean
	rm -f rust/bindings_generated.rs

rustfmt:
	rustfmt --edition 2021 $(RUST_SOURCES)

rustfmtcheck:
	rustfmt --edition 2021 --check $(RUST_SOURCES)

.PHONY: all modules clean rustfmt rustfmtcheck
