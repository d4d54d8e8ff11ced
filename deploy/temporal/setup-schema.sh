#!/bin/sh
# Creates Temporal's schema in its two PostgreSQL databases (made by
# deploy/postgres/initdb), or upgrades it to the version this admin-tools image
# ships. Runs before every start of the server, so both steps must be
# repeatable: setup-schema only adds the version tables (some server versions
# refuse when they exist: that is accepted), update-schema applies only the
# versions the database does not have yet.
#
# Environment (the same names the temporalio/server image reads):
#   POSTGRES_SEEDS, DB_PORT, POSTGRES_USER, SQL_PASSWORD, DBNAME, VISIBILITY_DBNAME
set -eu

: "${POSTGRES_SEEDS:?set POSTGRES_SEEDS to the PostgreSQL host}"
: "${POSTGRES_USER:?set POSTGRES_USER}"
: "${SQL_PASSWORD:?set SQL_PASSWORD}"
port="${DB_PORT:-5432}"
schema_dir=/etc/temporal/schema/postgresql/v12

sql_tool() {
    temporal-sql-tool --plugin postgres12 --endpoint "$POSTGRES_SEEDS" --port "$port" \
        --user "$POSTGRES_USER" "$@"
}

for target in "${DBNAME:-temporal}:temporal" "${VISIBILITY_DBNAME:-temporal_visibility}:visibility"; do
    database="${target%%:*}"
    schema="${target#*:}"
    echo "schema: $database ($schema)"
    if ! output=$(sql_tool --database "$database" setup-schema -v 0.0 2>&1); then
        if ! printf '%s' "$output" | grep -qi 'schema_version.*already exists'; then
            printf '%s\n' "$output" >&2
            echo "schema: setup-schema failed for $database" >&2
            exit 1
        fi
        echo "schema: $database already has its version tables"
    fi
    sql_tool --database "$database" update-schema -d "$schema_dir/$schema/versioned"
done
echo "schema: done"
