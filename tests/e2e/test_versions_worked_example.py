"""docs/versions.md's worked example, as its reader runs it: `allotment serve --demo`, then
`allotment catalog export`, an edited limit, `apply --dry-run`, `apply`, a migration at period
end, and the test clock moved to it. Each output the page shows is checked here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from allotment.cli import main
from tests.e2e.conftest import ADMIN_KEY, Server, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Server]:
    running = Server(database=tmp_path / "demo.db", port=free_port(), args=("--demo",))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def catalog_command(server: Server, *args: str) -> str:
    env = {"ALLOTMENT_URL": server.url, "ALLOTMENT_API_KEY": ADMIN_KEY}
    result = CliRunner().invoke(main, ["catalog", *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def limit(http: httpx.Client, customer: str) -> Any:
    answer = http.post("/v1/check", json={"customer": customer, "feature": "ai-requests"})
    return answer.json()["usage_limit"]


def test_the_worked_example_of_docs_versions(demo: Server, tmp_path: Path) -> None:
    page = (Path(__file__).parents[2] / "docs" / "versions.md").read_text()
    exported = catalog_command(demo, "export")
    # plans > team > entitlements > ai-requests > limit: 2000
    team = exported.index("  team:\n")
    limit_line = exported.index("limit: 1000", exported.index("ai-requests:", team))
    edited = exported[:limit_line] + "limit: 2000" + exported[limit_line + len("limit: 1000") :]
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(edited)

    dry_run = catalog_command(demo, "apply", str(catalog), "--dry-run")
    shown = re.search(r"```\n(Dry run: nothing was changed\.\n.*?)```", page, re.S)
    assert shown is not None
    assert dry_run == shown.group(1)

    applied = catalog_command(demo, "apply", str(catalog))
    assert applied.splitlines()[-1] == "Applied: 0 created, 2 changed, 10 unchanged."
    assert "Applied: 0 created, 2 changed, 10 unchanged." in page.replace("\n", " ")

    with demo.client() as http:
        # Initech keeps 1,000 + two packs of 500; a new Team subscriber gets 2,000 from the plan.
        assert limit(http, "initech") == 2000
        http.put("/v1/customers/hooli", json={"name": "Hooli"}).raise_for_status()
        fresh = http.post("/v1/customers/hooli/subscriptions", json={"plan": "team"})
        assert fresh.json()["plan_version"] == 2
        assert limit(http, "hooli") == 2000

        migration = http.post("/v1/plans/team/migrations", json={"at": "period_end"}).json()
        assert (migration["plan"], migration["from_versions"], migration["to_version"]) == (
            "team",
            [1],
            2,
        )
        assert (migration["at"], migration["subscriptions"]) == ("period_end", 2)  # Acme, Initech
        (waiting,) = http.get("/v1/customers/initech/subscriptions").json()["data"]
        assert (waiting["plan_version"], waiting["pending_version"]) == (1, 2)
        assert waiting["pending_at"] == waiting["current_period_end"]

        http.post("/v1/test/clock", json={"now": waiting["pending_at"]}).raise_for_status()
        assert limit(http, "initech") == 3000
        versions = http.get("/v1/plans/team/versions").json()["data"]
        assert [(v["version"], v["subscriptions"]) for v in versions] == [(1, 0), (2, 3)]
