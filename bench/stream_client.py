"""A small bounded async streaming client: `concurrency` workers run `count` streams in all
(or until `seconds` pass) and report time to first token and tokens per second as JSON.
One uncounted warm-up stream per worker opens the connections first."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

import aiohttp
import uvloop

TOKEN = b'"content":"tok"'


async def run(
    url: str, model: str, concurrency: int, count: int, seconds: float, key: str
) -> dict[str, float]:
    body = json.dumps(
        {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    ttfts: list[float] = []
    tokens = 0
    failed = 0
    completed = 0
    remaining = count
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> tuple[float | None, int] | None:
            start = time.perf_counter()
            first = None
            got = 0
            tail = b""
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    if r.status != 200:
                        return None
                    async for chunk in r.content.iter_any():
                        n = (tail + chunk).count(TOKEN)
                        tail = chunk[-len(TOKEN) :]
                        if n and first is None:
                            first = time.perf_counter() - start
                        got += n
                        if b"[DONE]" in chunk:
                            break
            except (TimeoutError, aiohttp.ClientError):
                return None
            return first, got

        async def worker() -> None:
            nonlocal tokens, failed, completed, remaining
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                result = await one()
                if result is None:
                    failed += 1
                    continue
                first, got = result
                tokens += got
                completed += 1
                if first is not None:
                    ttfts.append(first * 1000)

        await asyncio.gather(*(one() for _ in range(concurrency)))  # warm-up, not counted
        deadline = time.perf_counter() + seconds
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    ttfts.sort()

    def pct(p: float) -> float:
        return ttfts[min(len(ttfts) - 1, int(p * len(ttfts)))] if ttfts else float("nan")

    return {
        "ttft_p50_ms": statistics.median(ttfts) if ttfts else float("nan"),
        "ttft_p99_ms": pct(0.99),
        "tokens_per_s": tokens / wall if wall else 0.0,
        "completed": float(completed),
        "failed": float(failed),
    }


def main() -> None:
    url, model, concurrency, count, seconds, key = sys.argv[1:7]
    result = uvloop.run(run(url, model, int(concurrency), int(count), float(seconds), key))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
