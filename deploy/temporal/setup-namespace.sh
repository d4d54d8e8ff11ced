#!/bin/sh
# Prepares a Temporal namespace for ordersaga: creates it when missing, then
# registers the custom search attributes the workflow upserts. Safe to run
# again: an attribute that exists with the same type is left as it is; one that
# exists with another type fails with the server's message.
#
# Workers must not start before this has succeeded: upserting an unregistered
# search attribute fails the workflow task again and again.
#
# Environment:
#   TEMPORAL_ADDRESS     frontend host:port, e.g. temporal:7233
#   TEMPORAL_NAMESPACE   e.g. default
#   NAMESPACE_RETENTION  how long closed workflows are kept, e.g. 720h
#   SEARCH_ATTRIBUTES    space-separated Name=Type pairs, e.g. "OrderStatus=Keyword"
#   SETUP_ATTEMPTS       tries (2 s apart) for each step that waits on the server (default 60)
set -eu

: "${TEMPORAL_ADDRESS:?set TEMPORAL_ADDRESS to the frontend host:port}"
: "${TEMPORAL_NAMESPACE:?set TEMPORAL_NAMESPACE}"
: "${NAMESPACE_RETENTION:?set NAMESPACE_RETENTION, e.g. 720h}"
: "${SEARCH_ATTRIBUTES:?set SEARCH_ATTRIBUTES to Name=Type pairs}"
attempts="${SETUP_ATTEMPTS:-60}"

# Runs "$@" until it succeeds, at most $attempts times; the last error is shown.
retry() {
    what="$1"
    shift
    n=1
    until "$@"; do
        if [ "$n" -ge "$attempts" ]; then
            echo "setup: gave up on: $what (after $n tries)" >&2
            return 1
        fi
        n=$((n + 1))
        sleep 2
    done
}

echo "setup: waiting for Temporal at $TEMPORAL_ADDRESS"
retry "Temporal health" \
    temporal operator cluster health --address "$TEMPORAL_ADDRESS"

if temporal operator namespace describe --address "$TEMPORAL_ADDRESS" \
    --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1; then
    echo "setup: namespace $TEMPORAL_NAMESPACE exists"
else
    echo "setup: creating namespace $TEMPORAL_NAMESPACE (retention $NAMESPACE_RETENTION)"
    temporal operator namespace create --address "$TEMPORAL_ADDRESS" \
        --namespace "$TEMPORAL_NAMESPACE" --retention "$NAMESPACE_RETENTION"
fi

# A new namespace takes a few seconds to reach every frontend: retried.
for pair in $SEARCH_ATTRIBUTES; do
    name="${pair%%=*}"
    type="${pair#*=}"
    if [ -z "$name" ] || [ "$name" = "$pair" ] || [ -z "$type" ]; then
        echo "setup: bad SEARCH_ATTRIBUTES entry '$pair'; expected Name=Type" >&2
        exit 1
    fi
    echo "setup: search attribute $name ($type)"
    retry "search attribute $name" \
        temporal operator search-attribute create --address "$TEMPORAL_ADDRESS" \
        --namespace "$TEMPORAL_NAMESPACE" --name "$name" --type "$type"
done

echo "setup: done"
