#!/usr/bin/env bash
# Runs every test: unit tests, the store conformance suite and the
# end-to-end tests that drive a real `bosun server` with the real kubectl.
set -euo pipefail
cd "$(dirname "$0")"
cargo build -p bosun
cargo test --workspace -- --test-threads "${BOSUN_TEST_THREADS:-4}"
