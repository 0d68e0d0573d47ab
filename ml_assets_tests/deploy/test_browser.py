"""The UI in a real browser: `dagster dev` on a temporary DAGSTER_HOME after a small
`ml-assets run`, driven by Playwright with Debian's Chromium (no browser download). It checks
that every layer's assets are on the graph, that a partition's page shows its metadata and the
asset's checks, and that a backfill launched by clicking through the UI runs as one run.
Screenshots go to build/screenshots/. Skipped without Chromium; required under CI=true."""

from __future__ import annotations

import shutil
import time
from collections import defaultdict

import dagster as dg
import pytest

from ml_assets import cli
from ml_assets.config import load_configs
from ml_assets.definitions import build_definitions
from ml_assets_tests.deploy import services
from ml_assets_tests.helpers import REPO, flights_dict, local_storage, write_config

pytestmark = pytest.mark.browser

#: The groups the graph must show. The monitoring assets join with one more name: "monitoring".
GROUPS = ("raw", "processed", "features", "model", "predictions", "monitoring")
SCREENSHOTS = REPO / "build" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
BACKFILL = ("2013-01-08", "2013-01-14")


def assets_by_group(config) -> dict[str, list[str]]:
    """group -> asset key paths, from the code location itself."""
    defs = build_definitions(load_configs(config), storage=local_storage(config.parent))
    out: dict[str, list[str]] = defaultdict(list)
    for assets_def in defs.assets:
        for spec in assets_def.specs:
            out[spec.group_name].append("/".join(spec.key.path))
    return out


@pytest.fixture
def ui(tmp_path, monkeypatch):
    """`dagster dev` (webserver + daemon) on a fresh DAGSTER_HOME holding one small run."""
    browser = services.chromium()
    services.require(browser is not None, f"no Chromium at {services.CHROMIUM_CANDIDATES} "
                     "(apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    config = write_config(tmp_path / "flights.yaml", flights_dict())
    env = {"DAGSTER_HOME": str(home), "DATA_PATH": str(tmp_path / "tables"),
           "MODEL_PATH": str(tmp_path / "models"), "ML_ASSETS_CONFIG": str(config), "ENV":
           "development", "S3_BUCKET": ""}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["run", "--config", str(config), "--start", "2013-01-01", "--end",
                     "2013-01-08", "--as-of", "2013-01-07"]) == 0
    port = services.free_port()
    with services.processes() as procs:
        procs.start("dagster-dev", [str(services.BIN / "dagster"), "dev", "-w", "workspace.yaml",
                                    "-h", "127.0.0.1", "-p", str(port)],
                    tmp_path, cwd=REPO, env=services.env_with_bin())
        services.wait_for(lambda: services.port_open("127.0.0.1", port), 120,
                          "dagster dev to serve the UI", check=lambda: procs.check_alive(
                              "dagster-dev"))
        yield {"url": f"http://127.0.0.1:{port}", "browser": browser, "config": config,
               "procs": procs}


def _open(page, url: str):
    page.goto(url)
    page.wait_for_load_state("networkidle")
    skip = page.get_by_role("button", name="Skip")  # the first-visit newsletter dialog
    if skip.count():
        skip.first.click()


def test_the_ui_in_a_real_browser(ui):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)  # a loaded 2-core machine lays out graphs slowly
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    groups = assets_by_group(ui["config"])
    assert set(GROUPS) <= set(groups), f"the code location has groups {sorted(groups)}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=ui["browser"], headless=True,
                                    args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            # 1. every layer's assets are on the graph, group by group
            for group in GROUPS:
                _open(page, f"{ui['url']}/locations/ml_assets/asset-groups/{group}")
                for path in groups[group]:
                    # a node shows its asset's name; partitioned ones also link their partitions
                    expect(page.get_by_text(path.split("/")[-1], exact=True).first).to_be_visible()
                    if group not in ("model",):
                        expect(page.locator(f"a[href^='/assets/{path}?']").first).to_be_visible()
                page.screenshot(path=str(SCREENSHOTS / f"group-{group}.png"))

            # 2. a partition's page: its metadata; the asset's checks
            _open(page, f"{ui['url']}/assets/flights/features?view=partitions&partition=2013-01-03")
            for text in ("2013-01-03", "Materialized", "content_hash", "dagster/row_count",
                         "dagster/uri"):
                expect(page.get_by_text(text, exact=True).first).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "partition-metadata.png"))
            _open(page, f"{ui['url']}/assets/flights/features?view=checks")
            for check in ("no_leakage", "feature_columns", "feature_null_rate"):
                expect(page.get_by_text(check, exact=True).first).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "checks.png"))

            # 3. a backfill, clicked through the UI: raw for a week
            _open(page, f"{ui['url']}/assets/flights/raw")
            page.get_by_role("button", name="Materialize…").first.click()
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_text("Backfills all partitions in a single run.")).to_be_visible()
            box = dialog.get_by_placeholder("ex: 2013-01-01", exact=False)
            box.fill(f"[{BACKFILL[0]}...{BACKFILL[1]}]")
            box.press("Enter")
            expect(dialog.get_by_text("7 partitions")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "backfill-dialog.png"))
            dialog.get_by_role("button", name="Launch backfill").click()
            expect(page.get_by_role("dialog")).to_have_count(0)
        finally:
            browser.close()

    with dg.DagsterInstance.get() as instance:
        def backfill_runs_done():
            runs = [r for r in instance.get_runs() if "dagster/backfill" in r.tags]
            return runs and all(r.is_finished for r in runs) and runs

        runs = services.wait_for(backfill_runs_done, 180, "the UI's backfill to run",
                                 interval=1, check=lambda: ui["procs"].check_alive("dagster-dev"))
        time.sleep(2)  # a second run, if the backfill made one, would be submitted by now
        runs = [r for r in instance.get_runs() if "dagster/backfill" in r.tags]
        assert len(runs) == 1, f"the backfill made {len(runs)} runs"
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS
        assert runs[0].tags["dagster/asset_partition_range_start"] == BACKFILL[0]
        assert runs[0].tags["dagster/asset_partition_range_end"] == BACKFILL[1]
        raw = instance.get_materialized_partitions(dg.AssetKey(["flights", "raw"]))
        assert {f"2013-01-{d:02d}" for d in range(8, 15)} <= raw
