"""`boocode-gateway keys add|list|revoke`: managed keys, straight in the store the gateway uses
(GATEWAY_DATABASE_URL, else GATEWAY_DATA_DIR). Running gateways pick changes up within
GATEWAY_KEYS_REFRESH_S. A new key's secret is printed once; the store keeps its SHA-256."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from gateway.access.keys import digest, new_secret, parse_keys, valid_label
from gateway.core.config import Settings
from gateway.core.values import iso_utc
from gateway.store.backend import Backend
from gateway.store.tables import KeyExists, KeyRecord, KeysTable


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser(
        "keys",
        help="add, list or revoke managed API keys (with limits)",
        description="Managed API keys, kept in the gateway's store (GATEWAY_DATABASE_URL, else "
        "GATEWAY_DATA_DIR); running gateways pick changes up within GATEWAY_KEYS_REFRESH_S. "
        "They work on /v1/* only; GATEWAY_API_KEYS stay the admin keys.",
    )
    what = keys.add_subparsers(dest="keys_command", metavar="{add,list,revoke}", required=True)
    add = what.add_parser("add", help="make a key and print its secret (once)")
    add.add_argument("label", help="1-32 of A-Z a-z 0-9 _ . - (usage is recorded under it)")
    add.add_argument("--requests-per-minute", type=_positive, metavar="N")
    add.add_argument("--tokens-per-day", type=_positive, metavar="N", help="UTC days")
    add.add_argument(
        "--models", metavar="GLOB,...", help="model ids it may use, e.g. 'any/*,deepseek/*'"
    )
    add.add_argument(
        "--expires", metavar="DATE", help="ISO date or time (UTC unless it says) it stops working"
    )
    what.add_parser("list", help="the keys and their limits (never a secret)")
    revoke = what.add_parser("revoke", help="delete a key: refused everywhere within seconds")
    revoke.add_argument("label")


def _positive(text: str) -> int:
    value = int(text)
    if not 0 < value < 2**62:
        raise argparse.ArgumentTypeError("a positive whole number")
    return value


def _expiry(text: str) -> float:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        table = Backend(settings.data_dir, settings.database_url).keys()
    except Exception as exc:
        print(f"boocode-gateway keys: the store: {exc}", file=sys.stderr)
        return 1
    try:
        if args.keys_command == "add":
            return _add(table, settings, args)
        if args.keys_command == "revoke":
            if table.remove(args.label):
                print(f"revoked {args.label}")
                return 0
            print(f"boocode-gateway keys: no key labelled {args.label!r}", file=sys.stderr)
            return 1
        return _list(table)
    except Exception as exc:  # the store failed (unreachable, ...)
        print(f"boocode-gateway keys: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        table.close()


def _add(table: KeysTable, settings: Settings, args: argparse.Namespace) -> int:
    label = args.label
    if not valid_label(label):
        print("boocode-gateway keys: a label is 1-32 of A-Z a-z 0-9 _ . -", file=sys.stderr)
        return 2
    if label in {k.label for k in parse_keys(settings.api_keys)}:
        print(f"boocode-gateway keys: {label!r} is an admin key's label", file=sys.stderr)
        return 2
    try:
        expires = _expiry(args.expires) if args.expires else None
    except ValueError:
        print("boocode-gateway keys: --expires takes an ISO date or time", file=sys.stderr)
        return 2
    models = tuple(m.strip() for m in (args.models or "").split(",") if m.strip())
    secret = new_secret()
    record = KeyRecord(
        label, digest(secret.encode()), args.requests_per_minute, args.tokens_per_day, models,
        expires, time.time(),
    )  # fmt: skip
    try:
        table.add(record)
    except KeyExists as exc:
        print(f"boocode-gateway keys: {exc}", file=sys.stderr)
        return 1
    print(secret)
    print(
        f"key {label!r} added; the secret above is shown once (the store keeps only a hash)",
        file=sys.stderr,
    )
    if not settings.api_keys:
        print(
            "note: GATEWAY_API_KEYS is unset: /v1/* now needs a key, and the page and /api/* "
            "are closed (403) until GATEWAY_API_KEYS names an admin key",
            file=sys.stderr,
        )
    return 0


def _list(table: KeysTable) -> int:
    records = table.listing()
    rows = [("LABEL", "REQ/MIN", "TOKENS/DAY", "MODELS", "EXPIRES", "CREATED")]
    for k in records:
        rows.append((
            k.label,
            "-" if k.requests_per_minute is None else str(k.requests_per_minute),
            "-" if k.tokens_per_day is None else str(k.tokens_per_day),
            ",".join(k.models) or "*",
            "-" if k.expires is None else iso_utc(k.expires),
            iso_utc(k.created),
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0
