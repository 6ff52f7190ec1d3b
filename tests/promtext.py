"""Reading the gateway's /metrics text in tests: labelled samples of one metric."""

from __future__ import annotations


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """`name{a="x",b="y"} 3.0` lines -> {(("a", "x"), ("b", "y")): 3.0} (labels sorted)."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1 :].rsplit("} ", 1)
            pairs = (p.split("=", 1) for p in labels.split(","))
            out[tuple(sorted((k, v.strip('"')) for k, v in pairs))] = float(value)
    return out


def tokens(text: str) -> dict[tuple[str, str, str], float]:
    """gateway_tokens_total as {(provider, model, kind): count}."""
    return {
        (d["provider"], d["model"], d["kind"]): v
        for d, v in ((dict(k), v) for k, v in samples(text, "gateway_tokens_total").items())
    }
