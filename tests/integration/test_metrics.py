"""What /metrics tells about the process, the checks, the store, the cache and the feed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from allotment.api.routes.stream import _Reader
from allotment.api.services import Services
from allotment.api.store_metrics import CheckFigures, ServiceCollector
from allotment.config import Settings
from allotment.service.stats import Distribution
from tests.conftest import ON_MEMORY, Api, define_catalog, new_customer, open_api


def scrape(api: Api) -> dict[str, float]:
    """Every sample by name, with its labels as ``name{a=x,b=y}`` when it has any."""
    response = api.client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_process_and_python_figures_are_exported(api: Api) -> None:
    samples = scrape(api)
    assert samples["process_cpu_seconds_total"] > 0
    assert samples["process_resident_memory_bytes"] > 0
    assert any(name.startswith("python_info{") for name in samples)
    assert any(name.startswith("python_gc_collections_total{") for name in samples)


def test_checks_are_timed_and_their_cache_hits_counted(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "team")
    before = scrape(api)
    api.check("acme", "sso")  # the subscription dropped acme's snapshot: loaded first
    api.check("acme", "sso")  # from memory
    api.check("acme", "seats")
    after = scrape(api)

    def moved(name: str) -> float:
        return after[name] - before[name]

    assert moved("allotment_check_duration_seconds_count") == 3
    assert moved("allotment_check_duration_seconds_bucket{le=+Inf}") == 3
    assert moved("allotment_check_duration_seconds_sum") > 0
    assert (
        moved("allotment_snapshot_cache_misses_total"),
        moved("allotment_snapshot_cache_hits_total"),
    ) == (1, 2)
    assert after["allotment_snapshot_cache_customers"] >= 1
    # Checks are timed here, not in the per-route histogram of other requests.
    assert not any(
        name.startswith("allotment_http_request_duration_seconds_count{route=check")
        for name in after
    )


def test_the_store_reports_its_batches_commits_and_queue(api: Api) -> None:
    before = scrape(api)
    define_catalog(api)
    new_customer(api, "acme", "team")
    after = scrape(api)
    batches = after["allotment_store_batches_committed_total"]
    jobs = after["allotment_store_jobs_committed_total"]
    assert batches > before["allotment_store_batches_committed_total"]
    assert jobs >= batches  # a batch holds one job or more: their ratio is the batch size
    assert after["allotment_store_batch_duration_seconds_count"] == batches
    # The memory adapter has no commit of its own to time.
    commits = after["allotment_store_commit_duration_seconds_count"]
    assert commits == (0 if ON_MEMORY else batches)
    assert after["allotment_store_queue_depth"] == 0  # idle between requests
    # Everything this process committed is handed over: no lag behind the log.
    head = after["allotment_change_log_newest_revision"]
    assert head > before["allotment_change_log_newest_revision"]
    assert after["allotment_change_log_handed_over_revision"] == head
    assert after["allotment_change_log_lag_revisions"] == 0
    assert after["allotment_stream_readers"] == 0


def test_the_lag_is_what_the_log_holds_past_what_was_handed_over(tmp_path: Path) -> None:
    services = Services.open(Settings(database_path=tmp_path / "db.sqlite"))
    try:
        collector = ServiceCollector(services, CheckFigures(Distribution()))
        handed_over = services.runtime.store.last_seq
        collector.log_head = handed_over + 5  # another process committed five changes
        figures = {
            sample.name: sample.value for family in collector.collect() for sample in family.samples
        }
        assert figures["allotment_change_log_lag_revisions"] == 5
        collector.log_head = None  # the database did not answer this scrape
        names = {family.name for family in collector.collect()}
        assert "allotment_change_log_lag_revisions" not in names
        assert "allotment_change_log_handed_over_revision" in names
    finally:
        services.close()


def test_stream_readers_are_counted_and_closing_the_feed_ends_their_streams(
    tmp_path: Path,
) -> None:
    services = Services.open(Settings(database_path=tmp_path / "db.sqlite"))
    feed = services.feed

    async def still_live() -> bool:
        return True

    async def read_until_closed() -> list[bytes]:
        readers = [_Reader("key", None, keepalive_seconds=10.0) for _ in range(2)]
        streams = [reader.events(feed, None, await feed.bounds(), still_live) for reader in readers]
        first = [await anext(stream) for stream in streams]  # the preambles
        assert feed.readers == 2
        rest = [asyncio.ensure_future(_drain(stream)) for stream in streams]
        await asyncio.sleep(0.05)  # both wait for a change (no timing is asserted)
        feed.close()
        ended = await asyncio.wait_for(asyncio.gather(*rest), timeout=30)
        assert feed.readers == 0
        return first + [chunk for chunks in ended for chunk in chunks]

    try:
        chunks = asyncio.run(read_until_closed())
    finally:
        services.close()
    assert all(chunk.startswith(b"retry: ") for chunk in chunks[:2])
    assert chunks[2:] == []  # nothing after the preamble: the streams simply ended


async def _drain(stream: object) -> list[bytes]:
    return [chunk async for chunk in stream]  # type: ignore[attr-defined]


def test_a_full_snapshot_cache_drops_the_least_recently_used_and_says_so(tmp_path: Path) -> None:
    for api in open_api(tmp_path / "small.db", test_clock=True, cache_customers=2):
        define_catalog(api)
        for customer in ("acme", "globex", "initech"):
            new_customer(api, customer, "team")
        for customer in ("acme", "globex", "acme", "initech"):  # globex is the least recent
            api.check(customer, "sso")
        before = scrape(api)
        api.check("acme", "sso")
        api.check("initech", "sso")
        api.check("globex", "sso")  # loaded again, and acme leaves
        after = scrape(api)
        assert after["allotment_snapshot_cache_capacity"] == 2
        assert after["allotment_snapshot_cache_customers"] == 2
        assert after["allotment_snapshot_cache_evictions_total"] >= 2
        assert (
            after["allotment_snapshot_cache_hits_total"]
            - before["allotment_snapshot_cache_hits_total"]
            == 2
        )
        assert (
            after["allotment_snapshot_cache_misses_total"]
            - before["allotment_snapshot_cache_misses_total"]
            == 1
        )


@pytest.mark.sqlite_file
def test_the_stores_caches_drop_the_least_recently_used_pool_and_stay_exact(
    tmp_path: Path,
) -> None:
    for api in open_api(tmp_path / "pools.db", test_clock=True, cache_pools=2):
        api.put("/v1/currencies/cr", {"name": "Credits"}, 201)
        customers = ("acme", "globex", "initech")
        for customer in customers:
            api.put(f"/v1/customers/{customer}", {"name": customer}, 201)
            grant = {"amount": 100, "category": "paid", "idempotency_key": "g"}
            api.post(f"/v1/customers/{customer}/credits/cr/grants", grant, 201)
        for round_ in range(2):
            for customer in customers:  # each debit's pool pushes out the least recent
                debit = {"amount": 1, "idempotency_key": f"d{round_}"}
                answer = api.post(f"/v1/customers/{customer}/credits/cr/debits", debit, 200)
                assert answer["balance"] == 99 - round_
        samples = scrape(api)
        pools = "{cache=credit_pools}"
        assert samples[f"allotment_store_cache_capacity{pools}"] == 2
        assert samples[f"allotment_store_cache_entries{pools}"] == 2
        assert samples[f"allotment_store_cache_evictions_total{pools}"] >= 4
        assert samples[f"allotment_store_cache_misses_total{pools}"] >= 3
        assert "allotment_store_cache_capacity{cache=window_counters}" in samples
