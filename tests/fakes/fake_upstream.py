"""A fake OpenAI-compatible upstream: stands in for llama-server in tests.

    python tests/fakes/fake_upstream.py --port N [--model NAME] [misbehaviour flags]

Endpoints: GET /health, POST /v1/chat/completions (JSON or SSE with "stream": true),
POST /v1/completions, POST /v1/embeddings, and a catch-all that echoes the request back so tests
can see what was forwarded. Every JSON answer carries "served_by". When it is ready it prints
`listening on http://127.0.0.1:N` to stderr, like llama-server.

aiohttp is imported only once the early-exit flags have had their say, so a child that is meant to
fail does so in a few milliseconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--port", type=int, required=True, help="0 picks a free port")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--model", default="fake", help="name reported as served_by / model_served")
    p.add_argument("-m", dest="model_file", default=None, help="ignored, as llama-server's -m")
    p.add_argument("--chunks", type=int, default=3, help="SSE chunks per streamed answer")
    p.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between SSE chunks")
    p.add_argument("--start-delay", type=float, default=0.0, help="sleep before listening")
    p.add_argument("--health-503-for", type=float, default=0.0, help="seconds of 503 on /health")
    p.add_argument("--exit-on-start", type=int, default=None, metavar="CODE")
    p.add_argument("--crash-after-chunks", type=int, default=None, metavar="N")
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument(
        "--fork-child",
        action="store_true",
        help="leave a SIGTERM-ignoring grandchild in our process group, holding stdout/stderr",
    )
    p.add_argument(
        "--fork-escapee",
        action="store_true",
        help="leave a SIGTERM-ignoring grandchild in a new session, holding stdout/stderr",
    )
    p.add_argument("--print-lines", type=int, default=0, metavar="N")
    p.add_argument("--response-delay", type=float, default=0.0)
    return p.parse_args(argv)


def _sleeper(*, new_session: bool) -> None:
    """Leave behind a grandchild that only a SIGKILL sweep gets rid of."""
    sleep = shutil.which("sleep")
    argv = [sleep, "3600"] if sleep else [sys.executable, "-c", "import time; time.sleep(3600)"]
    # An ignored signal stays ignored across exec, so `sleep` inherits the immunity.
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        # Deliberately never waited for: it has to outlive this process to be a test subject.
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=new_session)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _early(args: argparse.Namespace) -> None:
    for i in range(args.print_lines):
        print(f"line {i}", flush=True)
    if args.exit_on_start is not None:
        print(f"loading model {args.model}", flush=True)
        print("error: cannot load model", file=sys.stderr, flush=True)
        sys.exit(args.exit_on_start)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.fork_child:
        _sleeper(new_session=False)
    if args.fork_escapee:
        _sleeper(new_session=True)
    if args.start_delay > 0:
        time.sleep(args.start_delay)


def _usage() -> dict[str, int]:
    return {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    _early(args)

    import asyncio

    from aiohttp import web

    started = time.monotonic()
    model = args.model

    def answer(payload: dict[str, Any], status: int = 200) -> web.Response:
        return web.json_response({**payload, "served_by": model}, status=status)

    async def read_json(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    async def delay() -> None:
        if args.response_delay > 0:
            await asyncio.sleep(args.response_delay)

    async def health(_: web.Request) -> web.Response:
        if time.monotonic() - started < args.health_503_for:
            print("health -> 503", file=sys.stderr, flush=True)
            error = {"message": "Loading model", "type": "unavailable_error", "code": 503}
            return answer({"error": error}, status=503)
        return answer({"status": "ok"})

    async def stream(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(args.chunks):
            if args.crash_after_chunks is not None and i >= args.crash_after_chunks:
                os._exit(3)
            if i and args.chunk_delay > 0:
                await asyncio.sleep(args.chunk_delay)
            delta: dict[str, str] = {"content": f"tok{i} "}
            if i == 0:
                delta["role"] = "assistant"
            last = i == args.chunks - 1
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body.get("model", model),
                "served_by": model,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": "stop" if last else None}
                ],
            }
            await resp.write(f"data: {_dumps(chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        await delay()
        if body.get("stream"):
            return await stream(request, body)
        message = {"role": "assistant", "content": "hello from " + model}
        return answer(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "model": body.get("model", model),
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": _usage(),
            }
        )

    async def completions(request: web.Request) -> web.Response:
        body = await read_json(request)
        await delay()
        return answer(
            {
                "id": "cmpl-fake",
                "object": "text_completion",
                "model": body.get("model", model),
                "choices": [{"index": 0, "text": "hello", "finish_reason": "stop"}],
                "usage": _usage(),
            }
        )

    async def embeddings(request: web.Request) -> web.Response:
        body = await read_json(request)
        await delay()
        inputs = body.get("input", "")
        count = len(inputs) if isinstance(inputs, list) else 1
        data = [{"object": "embedding", "index": i, "embedding": [0.6, 0.8]} for i in range(count)]
        usage = {"prompt_tokens": count, "total_tokens": count}
        return answer({"object": "list", "data": data, "model": body.get("model"), "usage": usage})

    async def echo(request: web.Request) -> web.Response:
        text = await request.text()
        await delay()
        return answer(
            {
                "path": request.path,
                "method": request.method,
                "query": request.query_string,
                "headers": dict(request.headers),
                "body": text,
                "model_served": model,
            }
        )

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_post("/v1/completions", completions)
        app.router.add_post("/v1/embeddings", embeddings)
        app.router.add_route("*", "/{tail:.*}", echo)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else args.port
        loop = asyncio.get_running_loop()
        if not args.ignore_sigterm:
            # Like llama-server when idle: a SIGTERM means a prompt, clean exit 0.
            loop.add_signal_handler(signal.SIGTERM, _exit_now, 0)
        print(f"listening on http://{args.host}:{port}", file=sys.stderr, flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


def _exit_now(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, separators=(",", ":"))


if __name__ == "__main__":
    main()
