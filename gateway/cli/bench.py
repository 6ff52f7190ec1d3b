"""`boocode-gateway bench`: measure models through a running gateway (gateway.arena.bench), one
after the other, print a progress line per model and a table (or --json), and POST the results
to the gateway's /api/bench, where the page shows them."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import aiohttp
import orjson

from gateway.access.keys import first_secret
from gateway.arena.bench import BenchError, Listed, Result, fleet_listing, measure
from gateway.core.config import Settings
from gateway.sync.remote import api_root
from gateway.sync.run import normalize_base_url, public_base_url

CONNECT_S = 10.0
READ_S = 600.0  # the longest silence from the gateway: a big model can take minutes to load


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    bench = sub.add_parser(
        "bench",
        parents=[common],
        help="measure prompt and generation speed of models through the gateway",
        description="Measure each model named (composite ids) through the running gateway, one "
        "at a time, on the machine that serves it: prompt processing and generation tokens/s "
        "and time to first token, from llama-server's timings where present, else wall time. "
        "Two runs per model; the second (warm) one is reported, and when the model had to load "
        "the first run's time to first token (which includes the load) is shown too. Only the "
        "models named are requested. Results are stored by the gateway (GET /api/bench, the "
        "page's Bench table). The gateway: --base-url, else GATEWAY_URL, else this machine's "
        "GATEWAY_HOST/PORT; sent the first key of GATEWAY_API_KEYS.",
    )
    bench.add_argument("models", nargs="+", metavar="MODEL", help="composite id: provider/model")
    bench.add_argument("--base-url", help="the gateway (default: GATEWAY_URL)")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.add_argument(
        "--prompt-tokens", type=_positive, default=512, help="prompt size (default: 512)"
    )
    bench.add_argument(
        "--gen-tokens", type=_positive, default=128, help="tokens to generate (default: 128)"
    )


def _positive(text: str) -> int:
    value = int(text)
    if not 0 < value <= 100_000:
        raise argparse.ArgumentTypeError("a whole number from 1 to 100000")
    return value


def _say(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def _tps(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def describe(r: Result) -> str:
    w = r.warm
    line = (
        f"{r.model} on {r.provider}: prompt {_tps(w.prompt_per_second)} t/s "
        f"({w.prompt_tokens or '?'} tokens), generation {_tps(w.tokens_per_second)} t/s "
        f"({w.completion_tokens or '?'} tokens), first token {_ms(w.ttft_ms)} [{w.source}]"
    )
    if r.loaded:
        line += (
            f"; the model had to load: the first request's first token took "
            f"{_ms(r.first_ttft_ms)} (that figure includes the load)"
        )
    return line


def table(results: list[Result]) -> str:
    rows = [("MACHINE", "MODEL", "PROMPT T/S", "GEN T/S", "FIRST TOKEN", "LOADED", "FROM")]
    for r in results:
        w = r.warm
        loaded = {True: f"yes ({_ms(r.first_ttft_ms)})", False: "no", None: "?"}[r.loaded]
        rows.append(
            (r.provider, r.model, _tps(w.prompt_per_second), _tps(w.tokens_per_second),
             _ms(w.ttft_ms), loaded, w.source)
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)  # fmt: skip


async def run(settings: Settings, args: argparse.Namespace) -> int:
    remote = args.base_url or os.environ.get("GATEWAY_URL", "").strip()
    root = api_root(normalize_base_url(remote) if remote else public_base_url(settings))
    api_key = first_secret(settings.api_keys)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    headers["User-Agent"] = "boocode-gateway-bench"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_S, sock_read=READ_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.get(root + "/api/models", headers=headers) as resp:
                raw, status = await resp.read(), resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            _say(
                f"cannot reach the gateway at {root} ({exc or type(exc).__name__}); is it running?"
            )
            return 1
        if status != 200:
            _say(
                f"{root}/api/models answered HTTP {status}: {raw[:200].decode('utf-8', 'replace')}"
            )
            return 1
        listing = fleet_listing(orjson.loads(raw))
        unknown = [m for m in args.models if m not in listing]
        if unknown:
            _say(
                f"not in the gateway's fleet: {', '.join(unknown)} (nothing was measured; "
                "GET /api/models lists the ids)"
            )
            return 1
        results, failed = await _measure_all(session, root, headers, listing, args)
        if results:
            await _store(session, root, headers, results)
    if args.json:
        print(orjson.dumps([r.json() for r in results], option=orjson.OPT_INDENT_2).decode())
    elif results:
        print(table(results))
    return 1 if failed else 0


async def _measure_all(
    session: aiohttp.ClientSession,
    root: str,
    headers: dict[str, str],
    listing: dict[str, Listed],
    args: argparse.Namespace,
) -> tuple[list[Result], int]:
    results: list[Result] = []
    failed = 0
    total = len(args.models)
    for n, model in enumerate(dict.fromkeys(args.models), 1):
        listed = listing[model]
        state = f", {listed.state} before" if listed.state else ""
        _say(f"[{n}/{total}] {model}: 2 runs, ~{args.prompt_tokens} prompt + "
             f"{args.gen_tokens} generated tokens{state} ...")  # fmt: skip
        try:
            result = await measure(
                session, root, headers, model, listed, args.prompt_tokens, args.gen_tokens
            )
        except BenchError as exc:
            failed += 1
            _say(f"[{n}/{total}] {model}: failed: {exc}")
            continue
        results.append(result)
        _say(f"[{n}/{total}] {describe(result)}")
    return results, failed


async def _store(
    session: aiohttp.ClientSession, root: str, headers: dict[str, str], results: list[Result]
) -> None:
    body = orjson.dumps({"results": [r.json() for r in results]})
    try:
        async with session.post(
            root + "/api/bench", data=body, headers={**headers, "Content-Type": "application/json"}
        ) as resp:
            if resp.status != 200:
                _say(f"warning: the gateway did not store the results (HTTP {resp.status})")
                return
    except (aiohttp.ClientError, TimeoutError) as exc:
        _say(f"warning: the gateway did not store the results ({exc})")
        return
    _say(f"stored {len(results)} result(s): GET {root}/api/bench, or the page's Bench table")
