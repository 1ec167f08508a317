#!/bin/sh
# The curlimages/curl stand-in's entrypoint (tests only): like the official
# image's, "IMAGE -sS URL" runs curl, "IMAGE sh -c ..." runs sh.
set -e
if [ "${1#-}" != "$1" ] || [ -z "$(command -v "${1:-}")" ]; then
    set -- curl "$@"
fi
exec "$@"
