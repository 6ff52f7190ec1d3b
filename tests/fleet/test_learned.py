"""What /props said, kept across restarts: an unloaded model keeps its window and capabilities
in the lists agents read; a bad file is reported and changes nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.fleet.context import Capabilities
from gateway.fleet.learned import DB_NAME, Learned
from tests.conftest import GatewayFactory, UpstreamFactory, catalog_of, registry_for

VISION = Capabilities(True, False, True, None)


async def test_what_was_learned_is_read_back_by_the_next_run(tmp_path: Path) -> None:
    first = Learned(tmp_path / DB_NAME)
    first.remember("a/vl", 8192, VISION)
    first.remember("a/txt", 4096, None)
    first.remember("a/nothing", None, None)  # nothing said: nothing kept
    await first.flush(1)
    first.remember("a/txt", None, Capabilities(False, None, None, None))  # adds, keeps 4096
    await first.flush(2)
    first.close()
    again = Learned(tmp_path / DB_NAME)
    assert again.facts == {
        "a/vl": (8192, VISION),
        "a/txt": (4096, Capabilities(False, None, None, None)),
    }
    again.close()


@pytest.mark.parametrize(
    ("context", "capabilities"),
    [
        (-1, None),
        (81.5, None),
        ("many", None),
        (None, "not json"),
        (None, '{"vision": "yes"}'),
        (None, "[true]"),
        (None, "{}"),
    ],
)
async def test_a_row_that_is_not_a_fact_is_passed_over(
    tmp_path: Path, context: object, capabilities: object
) -> None:
    Learned(tmp_path / DB_NAME).close()
    db = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    db.execute("INSERT INTO learned VALUES ('a/bad', ?, ?, 1)", (context, capabilities))
    db.execute("INSERT INTO learned VALUES ('a/good', 512, NULL, 1)")
    db.close()
    learned = Learned(tmp_path / DB_NAME)
    assert learned.facts == {"a/good": (512, None)}
    learned.close()


async def test_a_window_no_database_can_hold_is_not_a_fact_and_blocks_nothing(
    tmp_path: Path,
) -> None:
    learned = Learned(tmp_path / DB_NAME)
    learned.remember("a/huge", 2**63, None)  # (/props parsing refuses it first: see context)
    learned.remember("a/vl", 8192, VISION)
    await learned.flush(1)
    learned.close()
    again = Learned(tmp_path / DB_NAME)
    assert again.facts == {"a/vl": (8192, VISION)}
    again.close()


async def test_a_reader_beside_a_running_gateway_never_writes(tmp_path: Path) -> None:
    writer = Learned(tmp_path / DB_NAME)
    writer.remember("a/vl", 8192, VISION)
    await writer.flush(1)
    before = (tmp_path / DB_NAME).read_bytes()
    reader = Learned(tmp_path / DB_NAME, write=False)
    assert reader.facts == {"a/vl": (8192, VISION)}
    reader.remember("a/other", 4096, None)
    await reader.flush(2)
    assert (tmp_path / DB_NAME).read_bytes() == before
    assert not Learned(tmp_path / "absent.sqlite3", write=False).facts
    assert not (tmp_path / "absent.sqlite3").exists()
    reader.close()
    writer.close()


async def test_a_file_that_is_not_a_database_is_reported_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / DB_NAME
    path.write_bytes(b"not a database, and not the gateway's to overwrite" * 100)
    learned = Learned(path)
    learned.remember("a/vl", 8192, VISION)
    await learned.flush(1)  # in memory only
    assert learned.facts == {"a/vl": (8192, VISION)}
    assert path.read_bytes().startswith(b"not a database")
    assert "learned_unreadable" in capsys.readouterr().out
    learned.close()


async def test_an_unloaded_model_keeps_what_its_props_said_after_a_restart(
    upstream: UpstreamFactory, gateway: GatewayFactory, tmp_path: Path
) -> None:
    """llama-swap: /props is only asked for a loaded model. Loaded once, then the gateway
    restarts while the model is unloaded: the lists still say its window and capabilities."""
    box = await upstream("box", models=["vl", "other"], running=["vl"], props_n_ctx={"vl": 8192},
                         props_extra={"modalities": {"vision": True}})  # fmt: skip
    registry = registry_for({"id": "box", "baseUrl": box.url})
    data = tmp_path / "data"
    first = await gateway(registry, data_dir=data)
    await catalog_of(first).wait_ready()
    listed = (await (await first.get("/v1/models")).json())["data"]
    vl = {"context_length": 8192, "capabilities": {"vision": True}}
    assert {m["id"]: {k: m.get(k) for k in vl} for m in listed}["box/vl"] == vl
    await first.close()

    box.running = ["other"]  # vl unloaded; `other` has no /props window
    box.props_n_ctx = {}
    probed_before = len([r for r in box.requests if r.path.endswith("/props")])
    second = await gateway(registry, data_dir=data)
    await catalog_of(second).wait_ready()
    listed = (await (await second.get("/v1/models")).json())["data"]
    assert {m["id"]: {k: m.get(k) for k in vl} for m in listed}["box/vl"] == vl
    api = await (await second.get("/api/models")).json()
    entry = next(m for m in api["providers"][0]["models"] if m["id"] == "box/vl")
    assert entry["capabilities"] == {"vision": True}
    props = [r.path for r in box.requests if r.path.endswith("/props")][probed_before:]
    assert "/upstream/vl/props" not in props  # never asked: asking would load it
