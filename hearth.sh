#!/usr/bin/env bash
# Hearth's two commands (see README.md):
#
#   ./hearth.sh run    build and run Hearth on its embedded default: SQLite,
#                      the in-process MQTT broker, a simulated demo home and
#                      the web app, all on http://localhost:8080
#   ./hearth.sh test   every test: unit, storage contract, system tests on
#                      the embedded default and on MariaDB + Mosquitto, the
#                      browser tests; the Pi agent cross-compiled for
#                      aarch64; and each fuzz target run briefly
#   ./hearth.sh pi     cross-compile hearth-agent for a 64-bit Raspberry Pi
#                      (installs the aarch64 target and linker where missing)
#   ./hearth.sh fuzz [SECONDS]
#                      build the fuzz targets (fuzz/) and run each briefly
#                      (installs cargo-fuzz where missing)
#
# Each installs what it needs and is safe to rerun.
set -euo pipefail
cd "$(dirname "$0")"

say() { if [ -t 2 ]; then printf '\033[1m==> %s\033[0m\n' "$*" >&2; else printf '==> %s\n' "$*" >&2; fi; }

ensure_rust() {
    command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }
}

# The web app (frontend/): installs trunk, wasm-bindgen and wasm-opt where
# missing, then builds frontend/dist.
build_web() {
    say "building the web app (frontend/build.sh)"
    bash frontend/build.sh
}

# Starts MariaDB and Mosquitto if they are not answering, then waits for both.
ensure_services() {
    if ! mysql_up; then
        say "starting MariaDB"
        command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    fi
    if ! mqtt_up; then
        say "starting Mosquitto"
        command -v mosquitto >/dev/null || apt_install mosquitto mosquitto-clients
        mosquitto -d -c /etc/mosquitto/mosquitto.conf
    fi
    for _ in $(seq 1 60); do
        mysql_up && mqtt_up && return 0
        sleep 1
    done
    echo "MariaDB (127.0.0.1:3306) or Mosquitto (127.0.0.1:1883) did not come up" >&2
    exit 1
}
# Headless Chromium and its WebDriver for the browser tests (Debian's
# packages); the tests fail rather than skip without them.
ensure_browser() {
    if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
        say "installing Chromium and chromedriver"
        apt_install chromium chromium-driver
    fi
}

# Installs Debian packages, printing apt's output only if it fails.
apt_install() {
    local log
    log="$(mktemp)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "installing $* failed" >&2
        exit 1
    fi
    rm -f "$log"
}

mysql_up() { (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null; }
mqtt_up() { (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; }

cmd_run() {
    ensure_rust
    build_web
    say "building hearth (release)"
    cargo build --release -p hearth-backend --bin hearth
    mkdir -p .hearth
    # Loopback: with no user yet Hearth runs without logins, which it allows
    # only there. Serving the LAN takes a user first (README, "Who may see
    # and switch what") and HEARTH_LISTEN=0.0.0.0:8080.
    export HEARTH_LISTEN="${HEARTH_LISTEN:-127.0.0.1:8080}"
    export HEARTH_DATABASE_URL="${HEARTH_DATABASE_URL:-sqlite://.hearth/hearth.db}"
    export HEARTH_WEB_DIR="${HEARTH_WEB_DIR:-frontend/dist}"
    say "Hearth on http://localhost:${HEARTH_LISTEN##*:} (Ctrl-C stops it)"
    exec ./target/release/hearth
}

cmd_test() {
    ensure_rust
    say "checking formatting"
    cargo fmt --all -- --check
    say "checking the Kubernetes manifests (k8s/check.sh)"
    bash k8s/check.sh
    ensure_services
    ensure_browser
    build_web
    say "building the container images with podman (k8s/images.sh)"
    bash k8s/images.sh
    say "building every binary, and Hearth's Mosquitto plugin"
    cargo build --workspace --bins
    cargo build -p hearth-mosquitto-plugin
    say "cross-compiling hearth-agent for the Pi (aarch64-unknown-linux-gnu)"
    bash pi-agent/cross-build.sh >/dev/null
    export HEARTH_BINARIES_BUILT=1
    say "running every test"
    if command -v cargo-nextest >/dev/null; then
        cargo nextest run --workspace --no-fail-fast
    else
        cargo test --workspace --no-fail-fast
    fi
    say "fuzzing the topic parser and the readings decoder briefly (fuzz/)"
    bash fuzz/run.sh "${HEARTH_FUZZ_SECONDS:-15}"
}

cmd_pi() {
    ensure_rust
    bash pi-agent/cross-build.sh
}

cmd_fuzz() {
    ensure_rust
    bash fuzz/run.sh "${1:-${HEARTH_FUZZ_SECONDS:-20}}"
}

case "${1:-}" in
    run) cmd_run ;;
    test) cmd_test ;;
    pi) cmd_pi ;;
    fuzz) shift; cmd_fuzz "$@" ;;
    *) echo "usage: $0 run | test | pi | fuzz [SECONDS]" >&2; exit 2 ;;
esac
