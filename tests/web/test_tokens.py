"""Token counts read from relayed responses: JSON bodies, SSE streams, any chunking."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from swapd.obs.tokens import (
    JSON_EDGE,
    SSE_MAX_LINE,
    JsonTokens,
    SseTokens,
    Tokens,
    json_tokens,
    sniffer_for,
)

# Shapes copied from a real llama-server (b0, 2026): chat, streamed chat, /completion.
CHAT_JSON = (
    b'{"choices":[{"finish_reason":"length","index":0,"message":{"role":"assistant",'
    b'"content":" abou wilR >"}}],"created":1796500217,"model":"t.gguf","object":"chat.completion",'
    b'"usage":{"completion_tokens":4,"prompt_tokens":20,"total_tokens":24,'
    b'"prompt_tokens_details":{"cached_tokens":0}},"id":"chatcmpl-8cL",'
    b'"timings":{"cache_n":0,"prompt_n":20,"prompt_ms":2.949,"prompt_per_second":6781.9,'
    b'"predicted_n":4,"predicted_ms":0.31,"predicted_per_second":9677.41935483871}}'
)
COMPLETION_JSON = (
    b'{"index":0,"content":" up< but","tokens":[],"stop":true,"model":"t.gguf",'
    b'"tokens_predicted":3,"tokens_evaluated":2,"generation_settings":{"dry_sequence_breakers":'
    b'["\\n",":","\\"","*"]},"prompt":"<s> hi","timings":{"cache_n":1,"prompt_n":1,'
    b'"predicted_n":3,"predicted_per_second":20408.16326530612}}'
)


def _chunk(delta: dict[str, Any], **extra: Any) -> bytes:
    event = {
        "choices": [{"finish_reason": None, "index": 0, "delta": delta}],
        "object": "chat.completion.chunk",
        **extra,
    }
    return b"data: " + json.dumps(event).encode() + b"\n\n"


TIMINGS = {"cache_n": 19, "prompt_n": 1, "predicted_n": 3, "predicted_per_second": 16393.4}
SSE_TIMINGS_ONLY = (
    _chunk({"role": "assistant", "content": None})
    + _chunk({"content": " abou"})
    + _chunk({"content": ' "usage": 99'})
    + _chunk({"content": " th"})
    + _chunk({}, timings=TIMINGS)
    + b"data: [DONE]\n\n"
)
SSE_WITH_USAGE = (
    _chunk({"role": "assistant", "content": None})
    + _chunk({"content": " abou"})
    + _chunk({}, usage=None)
    + b'data: {"choices":[],"usage":{"completion_tokens":3,"prompt_tokens":20,"total_tokens":23},'
    + b'"timings":{"cache_n":19,"prompt_n":1,"predicted_n":3,"predicted_per_second":11299.4}}\n\n'
    + b"data: [DONE]\n\n"
)


def _sse(data: bytes, pieces: list[int] | None = None) -> Tokens:
    sniffer = SseTokens()
    for piece in _split(data, pieces or []):
        sniffer.feed(piece)
    return sniffer.result()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def test_tokens_chat_json_prefers_usage_and_takes_the_speed_from_timings() -> None:
    assert json_tokens(CHAT_JSON) == Tokens(20, 4, 9677.41935483871)


def test_tokens_completion_json_uses_tokens_evaluated_and_predicted() -> None:
    assert json_tokens(COMPLETION_JSON) == Tokens(2, 3, 20408.16326530612)


def test_tokens_json_without_any_counts_is_empty() -> None:
    assert json_tokens(b'{"object":"list","data":[]}') == Tokens()
    assert json_tokens(b"not json at all") == Tokens()
    # A key that is not followed by a colon is text, not a key.
    assert json_tokens(b'{"content":"usage","note":"timings"}') == Tokens()


def test_tokens_text_mentioning_usage_is_not_taken_for_the_key() -> None:
    body = (
        b'{"choices":[{"message":{"content":"{\\"usage\\": {\\"prompt_tokens\\": 999}}"}}],'
        b'"usage":{"prompt_tokens":5,"completion_tokens":6}}'
    )
    assert json_tokens(body) == Tokens(5, 6, None)


def test_tokens_anthropic_and_responses_shapes() -> None:
    assert json_tokens(b'{"type":"message","usage":{"input_tokens":7,"output_tokens":8}}') == (
        Tokens(7, 8, None)
    )
    responses = (
        b'{"type":"response.completed","response":{"usage":{"input_tokens":3,"output_tokens":4}}}'
    )
    assert json_tokens(responses) == Tokens(3, 4, None)
    stream = (
        b"event: message_start\n"
        b'data: {"type":"message_start",'
        b'"message":{"usage":{"input_tokens":11,"output_tokens":1}}}\n\n'
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","delta":{"text":"hi"}}\n\n'
        b"event: message_delta\n"
        b'data: {"type":"message_delta","usage":{"output_tokens":12}}\n\n'
    )
    assert _sse(stream) == Tokens(11, 12, None)


def test_tokens_sse_with_only_timings_adds_cached_prompt_tokens() -> None:
    assert _sse(SSE_TIMINGS_ONLY) == Tokens(20, 3, 16393.4)


def test_tokens_sse_usage_wins_and_a_null_usage_changes_nothing() -> None:
    assert _sse(SSE_WITH_USAGE) == Tokens(20, 3, 11299.4)


def test_tokens_sse_without_counts_is_empty() -> None:
    assert _sse(_chunk({"content": "x"}) + b"data: [DONE]\n\n") == Tokens()


def test_tokens_sse_unterminated_last_event_still_counts() -> None:
    assert _sse(b'data: {"usage":{"prompt_tokens":1,"completion_tokens":2}}') == Tokens(1, 2)


def test_tokens_sse_crlf_lines() -> None:
    data = SSE_WITH_USAGE.replace(b"\n", b"\r\n")
    assert _sse(data) == Tokens(20, 3, 11299.4)


def test_tokens_sse_an_overlong_line_is_dropped_not_buffered() -> None:
    sniffer = SseTokens()
    sniffer.feed(b'data: {"usage":{"prompt_tokens":1,"completion_tokens":1},"x":"')
    for _ in range(3):
        sniffer.feed(b"y" * (SSE_MAX_LINE // 2))
    assert len(sniffer._partial) <= SSE_MAX_LINE
    sniffer.feed(b'"}\n\ndata: {"usage":{"prompt_tokens":4,"completion_tokens":5}}\n\n')
    assert sniffer.result() == Tokens(4, 5)


def test_tokens_sse_keeps_a_bounded_number_of_lines() -> None:
    sniffer = SseTokens()
    for i in range(1000):
        sniffer.feed(_chunk({"content": "x"}, usage=None if i < 999 else {"prompt_tokens": i}))
    assert len(sniffer._lines) <= 4
    assert sniffer.result() == Tokens(999, None)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_tokens_sse_any_split_gives_the_same_counts(cuts: list[int]) -> None:
    assert _sse(SSE_TIMINGS_ONLY, cuts) == Tokens(20, 3, 16393.4)
    assert _sse(SSE_WITH_USAGE, cuts) == Tokens(20, 3, 11299.4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_tokens_json_any_split_gives_the_same_counts(cuts: list[int]) -> None:
    sniffer = JsonTokens()
    for piece in _split(CHAT_JSON, cuts):
        sniffer.feed(piece)
    assert sniffer.result() == Tokens(20, 4, 9677.41935483871)


def test_tokens_big_json_keeps_only_its_edges_and_finds_usage_at_either_end() -> None:
    floats = b",".join(b"0.123456789" for _ in range(100_000))  # ~1.2 MB, like embeddings
    head_usage = (
        b'{"model":"e","object":"list","usage":{"prompt_tokens":9,"total_tokens":9},'
        b'"data":[{"embedding":[' + floats + b"]}]}"
    )
    tail_usage = b'{"data":[{"embedding":[' + floats + b']}],"usage":{"prompt_tokens":8}}'
    for body, expected in ((head_usage, Tokens(9, None)), (tail_usage, Tokens(8, None))):
        sniffer = JsonTokens()
        for at in range(0, len(body), 16 * 1024):
            sniffer.feed(body[at : at + 16 * 1024])
        kept = sum(map(len, sniffer._head)) + sum(map(len, sniffer._tail))
        assert kept <= 2 * JSON_EDGE + 32 * 1024
        assert sniffer.result() == expected
        assert json_tokens(body) == expected


def test_tokens_invalid_counts_are_ignored() -> None:
    body = b'{"usage":{"prompt_tokens":-1,"completion_tokens":true},"timings":{"predicted_n":"x"}}'
    assert json_tokens(body) == Tokens()


def test_tokens_sniffer_is_chosen_by_media_type() -> None:
    assert isinstance(sniffer_for("text/event-stream"), SseTokens)
    assert isinstance(sniffer_for("application/json"), JsonTokens)
    assert isinstance(sniffer_for("application/problem+json"), JsonTokens)
    assert sniffer_for("audio/mpeg") is None
    assert sniffer_for("") is None
