"""Residency: what is loaded where, from /running and the gateway's own traffic."""

from __future__ import annotations

from gateway.fleet.residency import Residency


def test_a_plain_llama_server_has_everything_it_serves_loaded() -> None:
    r = Residency()
    r.refreshed("box", ["m", "alias"], None)
    assert r.is_loaded("box", "m") and r.is_loaded("box", "alias")


def test_llama_swap_one_model_at_a_time_swaps_on_the_gateways_own_traffic() -> None:
    r = Residency()
    r.refreshed("swap", ["a", "b"], ["a"])
    assert r.is_loaded("swap", "a") and not r.is_loaded("swap", "b")
    r.requested("swap", "b")  # b requested: llama-swap unloads a to load it
    assert r.loaded("swap") == {"b"}


def test_llama_swap_groups_keep_models_loaded_together() -> None:
    r = Residency()
    r.refreshed("swap", ["a", "b", "c"], ["a", "b"])
    r.requested("swap", "a")
    assert r.loaded("swap") == {"a", "b"}


def test_a_machine_that_stopped_answering_has_nothing_loaded() -> None:
    r = Residency()
    r.refreshed("swap", ["a"], ["a"])
    r.forget("swap")
    r.requested("swap", "a")  # unknown machine: nothing is assumed
    assert not r.is_loaded("swap", "a")


def test_a_model_the_machine_does_not_list_changes_nothing() -> None:
    r = Residency()
    r.refreshed("swap", ["a", "b"], ["a"])
    r.requested("swap", "typo")  # llama-swap answers 404: nothing was unloaded
    assert r.loaded("swap") == {"a"}


def test_states_loaded_loading_unloaded() -> None:
    r = Residency()
    r.refreshed("router", ["a", "b", "c"], ["a"], loading=["b"], at_once=2)
    assert [r.state("router", w) for w in ("a", "b", "c")] == ["loaded", "loading", "unloaded"]
    assert r.state("unknown-machine", "a") == "unloaded"
    r.loading("router", "c")  # a load asked through the gateway
    assert r.state("router", "c") == "loading"
    r.requested("router", "c")  # answered: loaded; two fit (--models-max 2): a stays
    assert r.state("router", "c") == "loaded" and r.loaded("router") == {"a", "c"}
    r.requested("router", "b")  # a third: the router makes room
    assert r.loaded("router") == {"b"}


def test_a_plain_server_never_shows_loading() -> None:
    r = Residency()
    r.refreshed("box", ["m"], None)
    r.loading("box", "m")
    assert r.state("box", "m") == "loaded" and r.swaps("box") is False
    assert r.swaps("nobody") is None
