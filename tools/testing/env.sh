# Sourced by the scripts in tools/testing: where the project's tools live,
# whatever PATH the caller (a fresh shell, CI) started with.
SCST_CACHE=${SCST_CACHE:-$HOME/.cache/scst-rs}
case ":$PATH:" in *":$HOME/.cargo/bin:"*) ;; *) PATH=$HOME/.cargo/bin:$PATH ;; esac
# virtme-ng, when setup had to install it into its own virtualenv.
[ -x "$SCST_CACHE/venv/bin/vng" ] && PATH=$PATH:$SCST_CACHE/venv/bin
export PATH SCST_CACHE
