#!/bin/sh
# Registers Stagehand's search attributes on the compose stack's Temporal
# server; run by the temporal-admin-tools service in docker-compose.yaml.
# Idempotent: attributes already registered are left alone, so `docker
# compose up` can run it on every start.
set -eu

: "${TEMPORAL_ADDRESS:?}" "${TEMPORAL_NAMESPACE:?}" "${STAGEHAND_SEARCH_ATTRIBUTES:?}"

# The server is healthy before auto-setup has registered the namespace; wait
# for the namespace itself (up to about two minutes).
tries=0
until temporal operator namespace describe --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    echo "namespace $TEMPORAL_NAMESPACE not available on $TEMPORAL_ADDRESS after 120s" >&2
    exit 1
  fi
  sleep 2
done

existing="$(temporal operator search-attribute list --namespace "$TEMPORAL_NAMESPACE" -o json)"
for def in $STAGEHAND_SEARCH_ATTRIBUTES; do
  name="${def%%=*}"
  type="${def#*=}"
  if printf '%s' "$existing" | grep -q "\"$name\""; then
    echo "search attribute $name already registered"
    continue
  fi
  echo "registering search attribute $name ($type)"
  temporal operator search-attribute create --namespace "$TEMPORAL_NAMESPACE" --name "$name" --type "$type"
done
