"""Command line: `swapd -config FILE [-listen HOST:PORT] [--check] [--log-level LEVEL]`, and
`swapd schema`, which prints the config's JSON Schema (for editors) and needs no config.

The only place that exits the process. Exit codes: 0 ok, 1 invalid config or runtime failure,
2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import signal
import sys
from pathlib import Path

import uvloop

from swapd import __version__
from swapd.app import serve
from swapd.config.gpu_fit import gpu_problems
from swapd.config.load import load_config
from swapd.config.model import Config
from swapd.config.schema import schema_text
from swapd.errors import ConfigError
from swapd.gpu.nvml import open_monitor

log = logging.getLogger("swapd")

_LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="swapd",
        description="Model-swapping daemon: one OpenAI endpoint for llama-server models.",
        epilog="`swapd schema` prints the config's JSON Schema, e.g. for an editor: "
        "swapd schema > swapd.schema.json",
    )
    p.add_argument("-config", "--config", metavar="FILE", help="YAML config file (required)")
    p.add_argument(
        "-listen",
        "--listen",
        metavar="HOST:PORT",
        default="127.0.0.1:8080",
        help="address to listen on (default: 127.0.0.1:8080)",
    )
    p.add_argument("--check", action="store_true", help="validate the config, print problems, exit")
    p.add_argument(
        "--log-level", choices=sorted(_LEVELS), help="overrides logLevel from the config"
    )
    p.add_argument("--version", action="version", version=f"swapd {__version__}")
    return p


def _split_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"-listen expects HOST:PORT, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _configure_logging(level: str) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
            },
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "plain",
                    "level": _LEVELS[level],
                },
            },
            # The level filters stderr only: /logs and the UI still see models' output (INFO)
            # when logLevel is warn or error.
            "root": {"level": "DEBUG" if level == "debug" else "INFO", "handlers": ["stderr"]},
            # Models' output reaches /logs without logging (see LogHub.model_line); through
            # logging it only goes to stderr, so it is not even made into records unless printed.
            "loggers": {
                "aiohttp.access": {"level": "WARNING"},
                "swapd.child": {"level": _LEVELS[level]},
            },
        }
    )


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["schema"]:
        return _print_schema(args_in[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.config:
        parser.error("-config FILE is required")
    try:
        host, port = _split_listen(args.listen)
    except ValueError as exc:
        parser.error(str(exc))

    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(f"{args.config}: warning: {warning}", file=sys.stderr)
    if args.check:
        problems = asyncio.run(_check_gpus(config))
        if problems:
            print(ConfigError(args.config, problems), file=sys.stderr)
            return 1
        print(f"{args.config}: ok ({len(config.models)} models)")
        return 0

    _configure_logging(args.log_level or config.log_level)
    try:
        uvloop.run(_run(config, host, port))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


def _print_schema(extra: list[str]) -> int:
    """`swapd schema`: the packaged JSON Schema, the one the loader validates with."""
    p = argparse.ArgumentParser(
        prog="swapd schema",
        description="Print the JSON Schema of swapd's config file (draft 2020-12) to stdout.",
    )
    p.parse_args(extra)
    sys.stdout.write(schema_text())
    return 0


async def _check_gpus(config: Config) -> list[str]:
    """`--check` on a GPU host also checks `gpus` and `vram` against the GPUs it has."""
    monitor = open_monitor()
    try:
        sample = await monitor.sample({})
        return gpu_problems(config, sample.gpus) if sample is not None else []
    finally:
        await monitor.close()


async def _run(config: Config, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(config, host, port, stop=stop)
