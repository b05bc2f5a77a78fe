#!/bin/sh
# PostgreSQL of deploy/compose.yaml, run as root in the cti-base image (Debian's postgresql
# package): on first start initdb in the volume (superuser "cti", password from
# $CTI_PG_PASSWORD for TCP logins, database "cti"), then postgres (setpriv: PID 1, stopped by SIGTERM) as user postgres on
# $CTI_PG_LISTEN:$CTI_PG_PORT.
set -eu
: "${CTI_PG_PASSWORD:?the password of the cti role}"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
bin=$(echo /usr/lib/postgresql/*/bin)
data=/var/lib/cti-pg/data
mkdir -p "$data" /run/postgresql
chown postgres:postgres "$data" /run/postgresql
chmod 700 "$data"
if [ ! -s "$data/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$CTI_PG_PASSWORD" > "$pwfile"
    chown postgres "$pwfile"
    as_postgres "$bin/initdb" -D "$data" -U cti --pwfile="$pwfile" -E UTF8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    # TCP from anywhere with the password (listen_addresses limits where it listens)
    echo "host all all 0.0.0.0/0 scram-sha-256" >> "$data/pg_hba.conf"
    echo "host all all ::/0 scram-sha-256" >> "$data/pg_hba.conf"
    echo "CREATE DATABASE cti;" | as_postgres "$bin/postgres" --single -D "$data" postgres >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$bin/postgres" -D "$data" -p "${CTI_PG_PORT:-5432}" \
    -c listen_addresses="${CTI_PG_LISTEN:-127.0.0.1}" -c unix_socket_directories=/run/postgresql
