"""The OpenAI-style endpoints swapd routes by the request's model: one list for the web routes
and the metrics' endpoint label, so the two cannot drift apart."""

from __future__ import annotations

MODEL_ENDPOINTS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/rerank",
    "/v1/reranking",
    "/rerank",
    "/reranking",
    "/v1/audio/transcriptions",
    "/v1/audio/speech",
    "/v1/images/generations",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/completion",
    "/infill",
)
