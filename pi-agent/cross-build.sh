#!/usr/bin/env bash
# Builds hearth-agent for a Raspberry Pi running a 64-bit OS (Raspberry Pi OS
# or Debian arm64; Pi 3, 4, 5, Zero 2 W), from an x86_64 Debian or Ubuntu.
# Installs what is missing first: the Rust target and Debian's aarch64 gcc and
# libc (the linker named in .cargo/config.toml). Safe to rerun.
#
#   pi-agent/cross-build.sh [extra cargo build arguments]
#
# Prints the path of the stripped binary; copy it to the Pi's /usr/local/bin.
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

command -v rustup >/dev/null || { echo "rustup not found: install Rust with rustup first" >&2; exit 1; }
if ! rustup target list --installed | grep -qx "$target"; then
    say "adding the Rust target $target"
    rustup target add "$target"
fi

# Debian's packages: the linker named in .cargo/config.toml, and the arm64 C
# library and start files it links against.
if ! command -v aarch64-linux-gnu-gcc >/dev/null || [ ! -e /usr/aarch64-linux-gnu/lib/libc.so ]; then
    command -v apt-get >/dev/null || {
        echo "aarch64-linux-gnu-gcc is missing and there is no apt-get: install gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (or your distribution's equivalent)" >&2
        exit 1
    }
    say "installing the aarch64 cross linker and C library (apt-get)"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "not root and no sudo: run apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross as root" >&2; exit 1; }
        sudo=sudo
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null
fi

say "building hearth-agent for $target (release)"
# Why strip symbols here: the Pi needs none, and it halves the binary.
CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release -p hearth-agent --target "$target" "$@"

binary="${CARGO_TARGET_DIR:-target}/$target/release/hearth-agent"
say "$(du -h "$binary" | cut -f1) $binary"
echo "$binary"
