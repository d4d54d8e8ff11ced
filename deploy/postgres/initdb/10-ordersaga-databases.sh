#!/usr/bin/env bash
# Runs once, when the PostgreSQL volume is first initialised (the postgres image
# runs /docker-entrypoint-initdb.d/*). Creates one database per owner role:
# each domain service gets its own database and role, Temporal gets its two.
# CONNECT is revoked from PUBLIC, so one service's role cannot open another
# service's database.
#
# Environment:
#   DATABASES      space-separated database:owner pairs, e.g. "inventory:inventory"
#   ROLE_PASSWORD  password of the owner roles
#   POSTGRES_USER, POSTGRES_DB  the superuser and its database (set by the image)
set -euo pipefail

: "${DATABASES:?set DATABASES to database:owner pairs}"
: "${ROLE_PASSWORD:?set ROLE_PASSWORD}"

admin_psql() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet \
        --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" "$@"
}

for pair in $DATABASES; do
    database="${pair%%:*}"
    owner="${pair#*:}"
    for name in "$database" "$owner"; do
        if [[ ! "$name" =~ ^[a-z_][a-z0-9_]*$ ]]; then
            echo "initdb: bad name '$name' in DATABASES entry '$pair'" >&2
            exit 1
        fi
    done
    echo "initdb: database $database owned by $owner"
    # psql variables (:'x' quoted as a literal, :"x" as an identifier) keep the
    # password and names out of the SQL text.
    admin_psql -v owner="$owner" -v password="$ROLE_PASSWORD" -v database="$database" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'owner', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'owner')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"database" TO :"owner";
SQL
done
