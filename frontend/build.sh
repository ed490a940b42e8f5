#!/usr/bin/env bash
# Builds the web app (release) into frontend/dist, where the backend serves it,
# with a .gz beside each text and wasm file for its precompressed serving.
#
# Installs what is missing first: the wasm32 target, trunk, the wasm-bindgen
# CLI at the version Cargo.lock resolves, and wasm-opt (binaryen from npm:
# Debian's is too old) under .tools/. Safe to rerun; prints one line on
# success, the captured output of the failing step otherwise. Honours
# CARGO_TARGET_DIR.
#
# If the size-optimised build (unstable compiler flags, see below) fails, it
# prints a WARNING and builds again with stable flags only: a larger app, the
# same behaviour. HEARTH_WEB_STABLE_ONLY=1 skips straight to that build (to
# check it, or on a toolchain that refuses the unstable flags).
set -euo pipefail

TRUNK_VERSION=0.21.14
BINARYEN_VERSION=132

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
dist="$repo/frontend/dist"
binaryen="$repo/.tools/binaryen"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$binaryen/node_modules/.bin:$PATH"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

# Runs a step with its output captured, shown only if the step fails.
quietly() {
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        echo "frontend/build.sh: failed: $*" >&2
        exit 1
    fi
}

# Tools are built in cargo's own temporary directory, not in the project's
# target directory.
install_crate() {
    quietly env -u CARGO_TARGET_DIR cargo install --quiet "$@"
}

quietly cargo fetch
wasm_bindgen_version="$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"$/\1/p;q}' Cargo.lock)"
if ! grep -qx "wasm_bindgen = \"$wasm_bindgen_version\"" Trunk.toml; then
    echo "frontend/build.sh: Cargo.lock has wasm-bindgen $wasm_bindgen_version; pin that version in Trunk.toml [tools]" >&2
    exit 1
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    quietly rustup target add wasm32-unknown-unknown
fi
# The standard library's source, rebuilt for the wasm build (see below).
if ! rustup component list --installed | grep -qx rust-src; then
    quietly rustup component add rust-src
fi
if [[ "$(trunk --version 2>/dev/null)" != "trunk $TRUNK_VERSION" ]]; then
    install_crate --locked trunk --version "$TRUNK_VERSION"
fi
if [[ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wasm_bindgen_version" ]]; then
    # Without --locked: the way it is known to build on the project's machines.
    install_crate wasm-bindgen-cli --version "$wasm_bindgen_version"
fi
if [[ "$(wasm-opt --version 2>/dev/null)" != *"version_$BINARYEN_VERSION"* ]]; then
    command -v npm >/dev/null || quietly apt-get install -y nodejs npm
    quietly npm install --prefix "$binaryen" --no-audit --no-fund "binaryen@$BINARYEN_VERSION"
fi

# Why erase_components: Leptos then type-erases every component's view,
# which cuts the gzipped wasm by about a tenth (the other size settings are
# the wasm-release profile and data-wasm-opt in index.html). Only the wasm
# build sees it; native unit tests build as before.
stable_rustflags="${RUSTFLAGS:-} --cfg erase_components"

# The size-optimised build.
#
# Why rebuild std (build-std) with panic=immediate-abort: a panic is then a
# bare trap, so no panic message, source location or Debug formatting is
# linked into the app, and location-detail=none drops the source paths std
# itself would embed; together about a tenth of the gzipped wasm. Nothing is
# lost: without a panic hook the browser never saw those messages. Both are
# unstable; RUSTC_BOOTSTRAP lets the stable toolchain use them, for this
# step only. RUSTFLAGS reach only the wasm target, not build scripts or
# proc macros, because trunk passes --target.
#
# Why fmt-debug=none: derived Debug impls are then empty and `{:?}` prints
# nothing, which drops the Debug code the dependencies carry (about 2 KiB of
# the gzipped wasm). The app shows no Debug output: errors reach the page
# through Display.
#
# Why skip the version check: trunk would ask GitHub for a newer release.
build_size_optimised() {
    # Why: the offline build compiles std, whose own dependencies (its
    # Cargo.lock, not ours) the `cargo fetch` above does not download.
    RUSTC_BOOTSTRAP=1 cargo fetch --manifest-path "$(rustc --print sysroot)/lib/rustlib/src/rust/library/Cargo.toml" &&
        RUSTFLAGS="$stable_rustflags -Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none -Zfmt-debug=none" \
            RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort TRUNK_SKIP_VERSION_CHECK=true \
            trunk build --release --offline
}

# Why a fallback: unstable flags may be renamed or refused by a compiler
# release; a larger app is better than none.
build=size-optimised
if [[ "${HEARTH_WEB_STABLE_ONLY:-}" == 1 ]]; then
    echo "frontend/build.sh: WARNING: HEARTH_WEB_STABLE_ONLY=1: building with stable flags only (no build-std, no -Z flags): the app will be larger" >&2
    build=stable-only
elif ! build_size_optimised >"$log" 2>&1; then
    echo "frontend/build.sh: WARNING: the size-optimised build (RUSTC_BOOTSTRAP, build-std, -Z flags) failed; building with stable flags only: the app will be larger. Its first errors:" >&2
    grep -m 5 -i 'error' "$log" | sed 's/^/    /' >&2 || true
    build=stable-only
fi
if [[ "$build" == stable-only ]]; then
    RUSTFLAGS="$stable_rustflags" TRUNK_SKIP_VERSION_CHECK=true quietly trunk build --release --offline
fi
find "$dist" -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.css' -o -name '*.html' \) -exec gzip -9 --keep --force {} +

shipped="$(cat "$dist"/*.wasm.gz "$dist"/*.js.gz | wc -c)"
echo "frontend/dist ($build build): $(du -sh "$dist" | cut -f1) on disk, $((shipped / 1024)) KiB of wasm+js sent gzipped"
