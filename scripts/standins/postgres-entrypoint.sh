#!/bin/sh
# The postgres stand-in's entrypoint -- TESTS ONLY (docs/containers.md).
#
# Does what the official image's docker-entrypoint.sh does for what the chart
# uses (charts/facegrid/templates/postgresql/statefulset.yaml): on the first
# start, with an empty $PGDATA, initdb as the running user with the superuser
# $POSTGRES_USER and the password $POSTGRES_PASSWORD (local connections trusted,
# as initdb's default), "host all all all scram-sha-256" appended to
# pg_hba.conf, a temporary socket-only server creates $POSTGRES_DB; then, and on
# every later start, exec postgres (listen_addresses = '*' comes from the
# package's postgresql.conf.sample, as in the official image).
#
# Not supported (the chart uses none of them): running as root (the official
# entrypoint chowns and drops to "postgres"), /docker-entrypoint-initdb.d,
# POSTGRES_INITDB_WALDIR, nss_wrapper for a uid without a passwd entry.
set -eu

log() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if [ "${1#-}" != "${1:-}" ]; then
    set -- postgres "$@"
fi

want_help() {
    for arg; do
        case "$arg" in
            -'?'|--help|--describe-config|-V|--version) return 0 ;;
        esac
    done
    return 1
}

if [ "${1:-}" = postgres ] && ! want_help "$@"; then
    uid=$(id -u)
    [ "$uid" != 0 ] || die "the postgres stand-in runs as a non-root user only (the chart runs uid 999)"
    getent passwd "$uid" > /dev/null \
        || die "uid $uid has no /etc/passwd entry, initdb refuses it: run as 999 (postgres) as the chart does"
    : "${PGDATA:?PGDATA must be set}"
    POSTGRES_USER=${POSTGRES_USER:-postgres}
    POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
    POSTGRES_HOST_AUTH_METHOD=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

    mkdir -p "$PGDATA"
    chmod 00700 "$PGDATA" || :

    if [ -s "$PGDATA/PG_VERSION" ]; then
        log 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
    else
        if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
            die "Database is uninitialized and superuser password is not specified: set POSTGRES_PASSWORD"
        fi
        # The password reaches initdb through a pipe: never on a command line.
        printf '%s\n' "${POSTGRES_PASSWORD:-}" \
            | initdb --username="$POSTGRES_USER" --pwfile=/dev/stdin ${POSTGRES_INITDB_ARGS:-}
        printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"

        port=${PGPORT:-5432}
        PGUSER=$POSTGRES_USER pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p $port" -w start
        sql() {
            psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc \
                --port "$port" --dbname postgres --set db="$POSTGRES_DB" "$@"
        }
        exists=$(echo "SELECT 1 FROM pg_database WHERE datname = :'db';" | sql --tuples-only)
        if [ -z "$(printf '%s' "$exists" | tr -d ' \n')" ]; then
            echo 'CREATE DATABASE :"db";' | sql
        fi
        PGUSER=$POSTGRES_USER pg_ctl -D "$PGDATA" -m fast -w stop
        log 'PostgreSQL init process complete; ready for start up.'
    fi
fi

exec "$@"
