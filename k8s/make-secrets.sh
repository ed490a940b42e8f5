#!/usr/bin/env bash
# Writes k8s/overlays/OVERLAY/secrets/database.env (which git ignores) with
# new random passwords, for an overlay that runs its own MariaDB (dev, prod):
#   k8s/make-secrets.sh dev
# Refuses to overwrite an existing file: the database keeps the passwords it
# was first started with. For external-mysql, copy the example and put your
# managed database's URL in it.
set -euo pipefail
overlay="${1:?usage: k8s/make-secrets.sh OVERLAY (dev, prod)}"
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/overlays/$overlay/secrets"
[ -f "$dir/database.env.example" ] || { echo "no overlay $overlay with secrets/database.env.example" >&2; exit 1; }
grep -q '^root-password=' "$dir/database.env.example" \
    || { echo "$overlay has no MariaDB of its own: copy $dir/database.env.example to database.env and fill it in" >&2; exit 1; }
[ ! -e "$dir/database.env" ] || { echo "$dir/database.env exists; not overwriting it" >&2; exit 1; }
# 192 random bits as hex: nothing to escape inside the URL.
random() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
password="$(random)"
(
    umask 077
    cat >"$dir/database.env" <<END
admin-password=$(random)
database-url=mysql://hearth:$password@mariadb:3306/hearth
password=$password
root-password=$(random)
mqtt-dynsec-password=$(random)
END
)
echo "wrote $dir/database.env (the first admin, \"admin\", logs in with its admin-password)"
