#!/usr/bin/env bash
# Builds the images the manifests run, here, with nothing pulled: static
# (musl) `hearth` and `hearth-gateway` binaries, then k8s/Containerfile.scratch
# (with the built web app, frontend/dist) and k8s/Containerfile.gateway.scratch
# with podman, tagged hearth:dev and hearth-gateway:dev; and
# k8s/Containerfile.mosquitto.scratch, Debian's Mosquitto with Hearth's
# plugin, tagged hearth-mosquitto:dev. Installs podman, runc, musl-tools,
# busybox-static and the musl target where missing; safe to rerun.
# `./hearth.sh test` runs it after the web build; the system test
# `image::the_hearth_image_serves_health_the_app_and_set_mode` runs the image.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }

missing=()
command -v podman >/dev/null || missing+=(podman)
[ -x /usr/sbin/runc ] || missing+=(runc)
command -v musl-gcc >/dev/null || missing+=(musl-tools)
# Why static: the image has no libraries for busybox (ldd fails on a static binary).
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    log="$(mktemp)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        exit 1
    fi
    rm -f "$log"
fi
target=x86_64-unknown-linux-musl
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >/dev/null

[ -f frontend/dist/index.html ] || { echo "frontend/dist is not built: run bash frontend/build.sh" >&2; exit 1; }

say "building static hearth and hearth-gateway ($target, release)"
cargo build --release --quiet --target "$target" \
    -p hearth-backend --bin hearth -p hearth-gateway --bin hearth-gateway

# The build context is the repository; .containerignore keeps it to the two
# binaries and the web app. Why copy the binaries into it: CARGO_TARGET_DIR
# may point outside the repository.
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/bin" "$context/frontend"
target_dir="${CARGO_TARGET_DIR:-target}"
cp "$target_dir/$target/release/hearth" "$target_dir/$target/release/hearth-gateway" "$context/bin/"
cp -r frontend/dist "$context/frontend/dist"

# Why runc: Debian's default crun is refused on these machines (cgroups in
# hybrid mode); see the README's Kubernetes section.
podman_() { podman --runtime /usr/sbin/runc "$@"; }
say "building hearth:dev and hearth-gateway:dev (podman, FROM scratch)"
podman_ build --quiet -f k8s/Containerfile.scratch --build-arg HEARTH_BIN=bin/hearth \
    -t hearth:dev "$context" >/dev/null
podman_ build --quiet -f k8s/Containerfile.gateway.scratch \
    --build-arg GATEWAY_BIN=bin/hearth-gateway -t hearth-gateway:dev "$context" >/dev/null
# Hearth's Mosquitto: the broker, mosquitto_ctrl and the two plugins at the
# paths k8s/base/mosquitto-dynsec.conf names, with every library they load
# (ldd) and the loader at the paths the binaries ask for.
say "building hearth-mosquitto:dev (podman, FROM scratch, Debian's Mosquitto)"
cargo build --release --quiet -p hearth-mosquitto-plugin
root="$context/mosquitto"
dynsec=/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so
plugin="$target_dir/release/libhearth_mosquitto.so"
for file in /usr/sbin/mosquitto /usr/bin/mosquitto_ctrl "$dynsec" "$plugin"; do
    ldd "$file" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
done | sort -u | while read -r lib; do install -D -m 0755 "$lib" "$root$lib"; done
install -D -m 0755 /usr/sbin/mosquitto "$root/usr/sbin/mosquitto"
install -D -m 0755 /usr/bin/mosquitto_ctrl "$root/usr/bin/mosquitto_ctrl"
install -D -m 0755 "$dynsec" "$root/usr/lib/mosquitto_dynamic_security.so"
install -D -m 0755 "$plugin" "$root/usr/lib/hearth/libhearth_mosquitto.so"
install -D -m 0755 /bin/busybox "$root/bin/sh"
mkdir -p "$root/mosquitto/config" "$root/mosquitto/data"
podman_ build --quiet -f k8s/Containerfile.mosquitto.scratch -t hearth-mosquitto:dev "$root" >/dev/null

podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '/hearth(-gateway|-mosquitto)?:dev ' >&2
