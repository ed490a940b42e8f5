#!/usr/bin/env bash
# Builds Hearth's fuzz targets and runs each one briefly (the CI smoke run).
#
#   fuzz/run.sh                 every target for 20 s
#   fuzz/run.sh 300             every target for 300 s
#   fuzz/run.sh 60 topic_parser one target
#
# Works on the stable toolchain rust-toolchain.toml pins (RUSTUP_TOOLCHAIN=nightly
# fuzz/run.sh would override it): cargo-fuzz is installed if missing and the
# targets are built without a sanitizer (-s none: cargo-fuzz 0.13 then passes
# only stable -C flags). RUSTC_BOOTSTRAP=1 is set anyway, for cargo-fuzz
# versions or options that add -Z flags. The targets depend on hearth-proto
# and hearth-domain only, so the instrumented build takes minutes.
# A crash stops the script with a non-zero status; the input that caused it is
# in fuzz/artifacts/<target>/ (replay: cargo fuzz run -s none <target> <file>).
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-${FUZZ_SECONDS:-20}}"
shift || true

CARGO_FUZZ_VERSION=0.13.2
if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    env -u CARGO_TARGET_DIR cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
export RUSTC_BOOTSTRAP=1

# A valid SenseHat batch as a seed, so raw-byte fuzzing starts inside the
# protobuf format (seq 7, three readings, time just before the targets' clock).
mkdir -p corpus/reading_payload
[ -e corpus/reading_payload/sensehat ] || printf '\x18\x07\x20\x98\x98\xf1\xc2\xb1\x34\x2a\x0b\x08\x01\x11\x00\x00\x00\x00\x00\x80\x35\x40\x2a\x0b\x08\x02\x11\x00\x00\x00\x00\x00\x00\x44\x40\x2a\x0b\x08\x03\x11\x00\x00\x00\x00\x00\xaa\x8f\x40' \
    > corpus/reading_payload/sensehat

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)

echo "==> building the fuzz targets" >&2
cargo fuzz build -s none
for target in "${targets[@]}"; do
    echo "==> fuzzing $target for ${secs}s" >&2
    cargo fuzz run -s none "$target" -- -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1
done
echo "==> no crash in ${targets[*]}" >&2
