"""The dashboard at /ui in a real headless Chromium, against a real API process and its embedded database.

Each page of a finished run and of a run in progress is opened and checked against what the API answers;
a program is submitted and an experiment vetoed from the page; /docs draws with no network. Screenshots of
every page go to $DASHBOARD_SHOTS (default: a pytest temporary folder). Skipped without chromium and
chromedriver (Debian: apt-get install -y chromium chromium-driver).
"""

from __future__ import annotations

import posixpath
import re

import httpx
import pytest

from database import docs
from database.app import create_app
from database.embedded import free_port
from tests.conftest import TEST_TOKEN, ApiProcess
from tests.database.dashboard_browser import Dashboard, shots_dir, start_browser, wait_for
from tests.database.dashboard_seed import seed_finished, seed_program, seed_running, variant

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def driver():
    browser = start_browser()
    yield browser
    browser.quit()


def api_with(tmp_path_factory, seed):
    run_dir = tmp_path_factory.mktemp("run")
    api = ApiProcess(run_dir, free_port()).start()
    try:
        return api, seed(api.url)
    except BaseException:
        api.stop()
        raise


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    api, ids = api_with(tmp_path_factory, seed_finished)
    yield api, ids
    api.stop()


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    api, ids = api_with(tmp_path_factory, seed_running)
    yield api, ids
    api.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return shots_dir(tmp_path_factory)


def get(api, path: str, **params):
    response = httpx.get(f"{api.url}{path}", params=params, timeout=10)
    response.raise_for_status()
    return response.json()


def rows_of(ui: Dashboard, selector: str) -> list[str]:
    return [r.text for r in ui.css(selector)]


async def test_the_page_and_every_module_it_imports_come_from_the_api(api_app):
    """No build step and no CDN: each asset the page names, transitively, is served by the API itself."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api_app), base_url="http://api") as http:
        page = (await http.get("/ui")).text
        todo, seen = re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page), set()
        assert len(todo) == 2, todo  # the stylesheet and the entry module
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            response = await http.get(path)
            assert response.status_code == 200, path
            outside = [u for u in re.findall(r"https?://[^'\"\s)]+", response.text) if u != "http://www.w3.org/2000/svg"]
            assert not outside, f"{path} refers outside the API: {outside}"
            for module in re.findall(r"from '(\.[^']+)'", response.text):
                todo.append(posixpath.normpath(posixpath.join(posixpath.dirname(path), module)))
        assert len([p for p in seen if p.endswith(".js")]) >= 9
        assert (await http.get("/")).headers["location"] == "/ui"


async def test_docs_fall_back_to_a_plain_list_without_the_bundles(api_settings, monkeypatch):
    monkeypatch.setattr(docs, "bundled_assets", lambda: None)
    app = create_app(api_settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        page = (await http.get("/docs")).text
    assert "<code>/candidates</code>" in page and "http" not in page.replace("http-equiv", "")


def test_every_page_of_a_finished_run_shows_the_api_data(driver, finished, shots):
    api, ids = finished
    ui = Dashboard(driver, api.url, shots)

    ui.open("overview", "finished-overview")
    stats = get(api, "/stats")
    status_rows = {el.get_attribute("data-status"): el.text.split()[-1] for el in ui.css("#by-status tbody tr")}
    assert status_rows == {s: str(n) for s, n in stats["by_status"].items()}
    for kind in ("engineer", "train", "evaluate", "analyse"):
        row = ui.css(f"#by-stage tr[data-kind={kind}]")[0].text.split()
        counts = [get(api, "/jobs", kind=kind, status=s, limit=1)["count"] for s in ("queued", "running", "succeeded", "failed")]
        assert row[1:] == [str(n) for n in counts], kind
    assert "smoke" in rows_of(ui, "#calibrations tbody tr")[0]
    assert ui.css("#by-role") and "total" in ui.css("#by-role")[0].text
    assert f"Best candidate so far: #{ids['best']} wide-heads" in ui.main_text()

    ui.open("pool", "finished-pool")
    pool = get(api, "/candidates", k=1000)
    assert [int(i) for i in ui.attribute_list("#pool-table tbody tr", "data-index")] == [e["index"] for e in pool]
    best_row = ui.css(f"#pool-table tr[data-index='{ids['best']}']")[0].text
    stats_best = next(e for e in pool if e["index"] == ids["best"])["train"]["val_loss_stats"]
    assert f"4.9 ± {stats_best['se']:.2g} (n=3)" in best_row, best_row
    # Sorting by validation loss: the first click puts the largest first, the second the smallest.
    for order in (True, False):
        ui.css("#pool-table th[data-key=val_loss]")[0].click()
        shown = [int(i) for i in ui.attribute_list("#pool-table tbody tr", "data-index")]
        assert shown == [e["index"] for e in sorted(pool, key=lambda e: e["train"]["val_loss"], reverse=order)]

    ui.open("tree", "finished-lineage")
    tree = get(api, "/tree")
    assert sorted(int(i) for i in ui.attribute_list("#lineage a.node", "data-index")) == [n["index"] for n in tree]
    ui.css(f"#lineage a.node[data-index='{ids['worse']}'] circle")[0].click()
    ui.follow("experiment")
    assert ui.main_text().startswith(f"#{ids['worse']} long-conv")

    ui.open(f"experiment/{ids['best']}", "finished-experiment")
    best = get(api, f"/experiments/{ids['best']}")
    assert driver.find_element("id", "motivation").text == best["motivation"]
    assert driver.find_element("id", "diff-stats").text == "2 lines added, 1 removed"
    added = [" ".join(r.text.split()) for r in ui.css("table.diff tr.add td.code")]
    assert added == ["+ num_heads: int = 2,", "+ # wider heads"]
    assert ui.attribute_list("#task-scores tbody tr", "data-task") == list(best["eval"]["tasks"])
    assert len(ui.css("#checks tbody tr")) == len(best["check"]["checks"])
    assert ui.css("svg.chart g.series[data-series^='baseline']"), "the loss chart lacks the baseline's curve"
    assert f"LLM tokens {best['costs']['llm_tokens']:,}" in driver.find_element("id", "costs").text
    assert best["analysis"]["summary"] in ui.main_text()

    ui.open(f"experiment/{ids['failed']}", "finished-failed-experiment")
    failed = get(api, f"/experiments/{ids['failed']}")
    assert failed["failure"]["reason"] in driver.find_element("id", "failure").text

    ui.open("jobs", "finished-jobs")
    jobs = get(api, "/jobs", limit=1000)
    assert sorted(ui.attribute_list("#jobs-table tbody tr", "data-job")) == sorted(j["id"] for j in jobs["data"])
    assert "No worker holds a lease." in ui.main_text()


def test_every_page_of_a_run_in_progress_and_it_updates_live(driver, running, shots):
    api, ids = running
    ui = Dashboard(driver, api.url, shots)

    ui.open("overview", "running-overview")
    assert ui.css("#by-stage tr[data-kind=train]")[0].text.split()[1:3] == ["0", "1"]  # queued, running
    assert ui.css("#by-stage tr[data-kind=research]")[0].text.split()[1] == "1"

    ui.open("pool", "running-pool")
    assert ui.attribute_list("#pool-table tbody tr", "data-index") == [str(ids["baseline"])]

    ui.open("tree", "running-lineage")
    assert len(ui.css("#lineage a.node")) == len(get(api, "/tree"))

    ui.open(f"experiment/{ids['training']}", "running-experiment")
    assert "checked" in ui.css("h1 .badge")[0].text and "Not trained yet." in ui.main_text()

    ui.open("jobs", "running-jobs")
    assert "trainer-gpu0" in driver.find_element("id", "workers").text
    assert "expires in" in ui.css(f"tr[data-job='{ids['leased_job']}']")[0].text
    assert "attempt 1: lease expired" in ui.css(f"tr[data-job='{ids['retried_job']}']")[0].text
    # Live: the trainer finishes its job; the open page shows it within a few polls, without a reload.
    httpx.post(f"{api.url}/jobs/{ids['leased_job']}/complete", json={"worker": "trainer-gpu0", "result": {}},
               headers={"Authorization": f"Bearer {TEST_TOKEN}"}, timeout=10).raise_for_status()
    wait_for(lambda: ui.css(f"tr[data-job='{ids['leased_job']}']")[0].get_attribute("data-status") == "succeeded",
             what="the jobs page to show the finished job")
    ui.assert_healthy("jobs after an update")


def test_pause_and_resume_from_the_dashboard(driver, running, shots):
    api, _ = running
    ui = Dashboard(driver, api.url, shots)
    ui.open("steer", "running-steering")
    ui.type_into("token", TEST_TOKEN)
    ui.type_into("actor", "ada")
    driver.find_element("id", "pause").click()
    wait_for(lambda: get(api, "/control")["paused"], what="the run to pause")
    wait_for(lambda: "run paused" in driver.find_element("id", "run-state").text, what="the header to say paused")
    assert get(api, "/control")["by"] == "ada"
    driver.find_element("id", "resume").click()
    wait_for(lambda: not get(api, "/control")["paused"], what="the run to resume")
    wait_for(lambda: [a.get_attribute("data-action") for a in ui.css("#actions tbody tr")][:2] == ["resume", "pause"],
             what="the actions log to list pause and resume")


def test_submit_a_program_from_the_dashboard(driver, finished, shots):
    api, ids = finished
    ui = Dashboard(driver, api.url, shots)
    ui.open("steer", "finished-steering")
    program = variant(seed_program(), "conv_size: int = 4,", "conv_size: int = 2,", "        # shorter")
    ui.set_field("submit-program", program)
    ui.type_into("submit-name", "hand-short-conv")
    ui.type_into("submit-parent", str(ids["baseline"]))
    ui.type_into("token", "")
    driver.find_element("id", "submit-button").click()
    wait_for(lambda: "token" in driver.find_element("id", "submit-message").text, what="a refusal without the token")
    ui.forget_log()

    ui.type_into("token", TEST_TOKEN)
    driver.find_element("id", "submit-button").click()
    message = wait_for(lambda: "Submitted as" in (t := driver.find_element("id", "submit-message").text) and t,
                       what="the submission to go through")
    made = next(e for e in get(api, "/experiments", limit=500)["data"] if e["name"] == "hand-short-conv")
    assert f"#{made['index']} hand-short-conv" in message
    assert made["origin"] == "human" and made["program"] == program and made["parent"] == ids["baseline"]
    assert [j["kind"] for j in get(api, "/jobs", experiment=made["index"])["data"]] == ["engineer"]
    wait_for(lambda: "submit" in ui.attribute_list("#actions tbody tr", "data-action"), what="the action in the log")
    ui.screenshot("finished-steering-after-submit")

    ui.css("#submit-message a")[0].click()
    ui.follow("experiment")
    assert driver.find_element("id", "diff-stats").text == "2 lines added, 1 removed"
    assert "proposed" in ui.css("h1 .badge")[0].text


def test_veto_an_experiment_from_the_dashboard(driver, finished, shots):
    api, ids = finished
    target = ids["worse"]
    assert target in [e["index"] for e in get(api, "/candidates")]
    ui = Dashboard(driver, api.url, shots)
    ui.open(f"experiment/{target}", "finished-experiment-before-veto")
    ui.type_into("token", TEST_TOKEN)
    ui.type_into("veto-reason", "trained on a corrupted shard")
    driver.find_element("id", "veto-button").click()
    wait_for(lambda: ui.css("#veto") and "trained on a corrupted shard" in ui.css("#veto")[0].text,
             what="the page to show the veto")
    ui.screenshot("finished-experiment-vetoed")
    assert target not in [e["index"] for e in get(api, "/candidates")]
    assert get(api, f"/experiments/{target}")["veto"]["reason"] == "trained on a corrupted shard"
    ui.open("pool", "finished-pool-after-veto")
    assert str(target) not in ui.attribute_list("#pool-table tbody tr", "data-index")


def test_docs_draw_offline(driver, finished, shots):
    api, _ = finished
    page = httpx.get(f"{api.url}/docs", timeout=10).text
    assert "cdn" not in page.lower() and "/docs-assets/swagger-ui-bundle.js" in page
    assert httpx.get(f"{api.url}/docs-assets/swagger-ui-bundle.js", timeout=10).status_code == 200
    # The browser has no route to a CDN in CI either way: the page draws from the API's own assets.
    driver.get(f"{api.url}/docs")
    title = wait_for(lambda: driver.find_elements("css selector", ".swagger-ui .info .title"), what="Swagger UI to draw")
    assert "candidate API" in title[0].text
    assert driver.find_elements("css selector", ".opblock"), "Swagger UI drew no operation"
    Dashboard(driver, api.url, shots).screenshot("docs")
    driver.get(f"{api.url}/redoc")
    wait_for(lambda: "candidate API" in driver.find_element("tag name", "body").text, what="ReDoc to draw")
