#!/usr/bin/env bash
# Makes sure Debian's `chromium` is installed: the UI's browser test (tests/e2e/test_ui_browser.py)
# drives it through Playwright, which never downloads a browser of its own here.
# Installs it with apt-get when missing and possible (root, or passwordless sudo); otherwise it
# says what to run and leaves the decision to the test (it fails under SWAPD_REQUIRE_REAL=1).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: chromium is missing and there is no apt-get; install chromium" >&2
  exit 0
fi
if [[ "$(id -u)" == 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "ensure_chromium: chromium is missing; run: sudo apt-get install -y chromium" >&2
  exit 0
fi
echo "ensure_chromium: installing chromium (the UI's browser test needs it)" >&2
"${SUDO[@]}" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq chromium >&2
