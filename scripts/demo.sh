#!/usr/bin/env bash
# `make demo`: build llama-server if missing, generate three tiny models, run swapd on
# examples/demo.yaml and print example requests. Ctrl-C stops swapd and every model it started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
LISTEN="${SWAPD_DEMO_LISTEN:-127.0.0.1:8080}"

LLAMA_SERVER_BIN="$(scripts/ensure_llama_server.sh)"
export LLAMA_SERVER_BIN
SWAPD_DEMO_DIR="${SWAPD_DEMO_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/swapd/demo-models}"
export SWAPD_DEMO_DIR
mkdir -p "$SWAPD_DEMO_DIR"
seed=1
for name in tiny-a tiny-b tiny-c; do
  [[ -f "$SWAPD_DEMO_DIR/$name.gguf" ]] || "$PY" scripts/make_tiny_gguf.py "$SWAPD_DEMO_DIR/$name.gguf" --seed "$seed"
  seed=$((seed + 1))
done

cat <<MSG

swapd demo: three tiny llama models (random weights, so the text is gibberish) behind
http://$LISTEN. Try, in another terminal:

  curl -s http://$LISTEN/v1/models | python3 -m json.tool
  curl -s http://$LISTEN/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"model":"tiny-a","messages":[{"role":"user","content":"Hello"}],"max_tokens":16}'
  curl -sN http://$LISTEN/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"model":"tiny-b","stream":true,"messages":[{"role":"user","content":"Hi"}],"max_tokens":8}'
  curl -s http://$LISTEN/v1/embeddings -H 'Content-Type: application/json' \\
       -d '{"model":"tiny-c","input":"hello"}'
  curl -s http://$LISTEN/running
  curl -s -X POST http://$LISTEN/unload

The web UI is at http://$LISTEN/ui and Prometheus metrics at http://$LISTEN/metrics.
Each request for another model swaps it in (watch the log below). Ctrl-C to stop.

MSG
exec "$PY" -m swapd -config examples/demo.yaml -listen "$LISTEN"
