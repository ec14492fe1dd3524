#!/bin/sh
# voicetrace container entry point: choose real Gemini or the emulator, then run the command.
#
# With GEMINI_API_KEY set (non-empty) nothing changes: the SDK talks to Gemini with the system
# CA store. Without it, the service is pointed at the `emulator` container (deploy/emulator.py):
# its URL, its (non-secret) key, and SSL_CERT_FILE = the CA bundle it publishes on the shared
# volume (public roots + the emulator CA, so other HTTPS still verifies) — and, for `voicetrace
# serve` without --tools, the demo tools the emulator's assistant knows how to call. With real
# Gemini the service's tool set stays what the command says (none by default).
set -eu

if [ -z "${GEMINI_API_KEY:-}" ]; then
    url="${VOICETRACE_EMULATOR_URL:-https://emulator:9443}"
    bundle="${VOICETRACE_EMULATOR_CA_BUNDLE:-/emulator-certs/ca-bundle.pem}"
    wait_s="${VOICETRACE_EMULATOR_WAIT_S:-60}"
    # compose orders start-up with depends_on; this covers `docker run` and restarts.
    waited=0
    while [ ! -s "$bundle" ]; do
        if [ "$waited" -ge "$wait_s" ]; then
            echo "voicetrace: GEMINI_API_KEY is not set and the emulator's CA bundle $bundle" \
                "did not appear within ${wait_s}s; start the emulator service or set" \
                "GEMINI_API_KEY" >&2
            exit 78
        fi
        sleep 1
        waited=$((waited + 1))
    done
    GEMINI_API_KEY="${EMULATOR_API_KEY:-emulator-key}"
    GOOGLE_GEMINI_BASE_URL="$url"
    SSL_CERT_FILE="$bundle"
    export GEMINI_API_KEY GOOGLE_GEMINI_BASE_URL SSL_CERT_FILE
    echo "voicetrace: GEMINI_API_KEY not set, using the Gemini Live emulator at $url" >&2
    # The emulator's assistant calls search_nearby / navigate_to_location when asked: give
    # `voicetrace serve` the demo tools unless the command chose its own (--tools).
    if [ "${1:-}" = "voicetrace" ] && [ "${2:-}" = "serve" ]; then
        case " $* " in
            *" --tools "* | *" --tools="*) ;;
            *)
                set -- "$@" --tools voicetrace.demo.tools:demo_registry
                echo "voicetrace: serving the demo tools (voicetrace.demo.tools)" >&2
                ;;
        esac
    fi
fi

exec "$@"
