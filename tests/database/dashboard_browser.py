"""A headless Chromium driven by Selenium, and the checks every dashboard page must pass.

`open_page` loads a route, waits until the page has drawn its data, saves a screenshot and fails on a
blank or broken page: an empty main element, an error box, a script error or a severe browser log entry.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = next(filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")


def start_browser():
    """A headless Chromium, or a skip that says what is missing and how to install it."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -r requirements.txt)")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver (apt-get install -y chromium "
                    "chromium-driver) to run the dashboard's browser tests")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: CI runs as root, where Chromium's own sandbox refuses to start.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def shots_dir(tmp_path_factory) -> Path:
    folder = Path(os.environ["DASHBOARD_SHOTS"]) if os.environ.get("DASHBOARD_SHOTS") else tmp_path_factory.mktemp("shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(condition, timeout_s: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = condition()
        except Exception:  # the element is being replaced by a re-render: try again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.1)


class Dashboard:
    def __init__(self, driver, url: str, shots: Path):
        self.driver, self.url, self.shots = driver, url, shots

    def main_text(self) -> str:
        return self.driver.find_element("id", "main").text

    def ready(self, page: str) -> bool:
        return self.driver.execute_script(
            "const m = document.getElementById('main'); return m.dataset.page === arguments[0] && m.dataset.ready === '1'",
            page)

    def assert_healthy(self, label: str) -> None:
        errors = self.driver.execute_script("return window.uiErrors || null")
        assert errors == [], f"{label}: script errors {errors}"
        severe = [entry for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not severe, f"{label}: the browser logged errors {severe}"
        text = self.main_text().strip()
        assert len(text) > 40, f"{label}: the page is blank ({text!r})"
        boxes = self.driver.find_elements("css selector", "#main .error:not(section)")
        assert not boxes, f"{label}: the page shows an error: {[b.text for b in boxes]}"

    def forget_log(self) -> None:
        """Drop the browser log so far: after a request that was meant to be refused (a 401 logs a network error)."""
        self.driver.get_log("browser")

    def open(self, route: str, label: str | None = None) -> None:
        """Load `#/route` fresh, wait for its data, check it is whole, and save a screenshot."""
        page = route.split("/")[0]
        self.driver.get(f"{self.url}/ui#/{route}")
        wait_for(lambda: self.ready(page), what=f"page {route} to draw")
        self.assert_healthy(label or route)
        self.screenshot(label or route)

    def follow(self, page: str) -> None:
        """After an in-page navigation (a click), wait for `page` to draw."""
        wait_for(lambda: self.ready(page), what=f"page {page} to draw")
        self.assert_healthy(page)

    def screenshot(self, label: str) -> Path:
        # The whole page, not the first screenful: grow the window to the document's height first.
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(1400, min(max(900, height + 40), 8000))
        # The window's size includes the browser's frame: grow it by what the viewport still lacks.
        lacking = self.driver.execute_script("return document.documentElement.scrollHeight - window.innerHeight")
        if lacking > 0:
            self.driver.set_window_size(1400, min(max(900, height + 40) + lacking, 8000))
        self.driver.execute_script("window.scrollTo(0, 0)")
        path = self.shots / f"{label.replace('/', '-')}.png"
        assert self.driver.save_screenshot(str(path)), f"could not write the screenshot {path}"
        self.driver.set_window_size(1400, 1000)
        return path

    def css(self, selector: str):
        return self.driver.find_elements("css selector", selector)

    def attribute_list(self, selector: str, attribute: str) -> list[str]:
        return [el.get_attribute(attribute) for el in self.css(selector)]

    def type_into(self, element_id: str, text: str) -> None:
        element = self.driver.find_element("id", element_id)
        element.clear()
        element.send_keys(text)

    def set_field(self, element_id: str, text: str) -> None:
        """Set a long value at once (send_keys types slowly and textarea auto-indent is not an issue here)."""
        element = self.driver.find_element("id", element_id)
        self.driver.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))",
                                   element, text)


def browser_available() -> bool:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return CHROMIUM is not None and CHROMEDRIVER is not None


def check_every_page(url: str, shots: Path, label: str) -> None:
    """Open each page of the run an API serves, check it against the API's answers, and screenshot it."""
    import httpx

    shots.mkdir(parents=True, exist_ok=True)
    driver = start_browser()
    try:
        ui = Dashboard(driver, url, shots)
        for route in ("overview", "jobs", "steer"):
            ui.open(route, f"{label}-{route}")
        ui.open("pool", f"{label}-pool")
        pool = httpx.get(f"{url}/candidates", params={"k": 1000}, timeout=10).json()
        assert [int(i) for i in ui.attribute_list("#pool-table tbody tr", "data-index")] == [e["index"] for e in pool]
        ui.open("tree", f"{label}-lineage")
        tree = httpx.get(f"{url}/tree", timeout=10).json()
        assert sorted(int(i) for i in ui.attribute_list("#lineage a.node", "data-index")) == [n["index"] for n in tree]
        for node in tree:
            ui.open(f"experiment/{node['index']}", f"{label}-experiment-{node['index']}")
            assert ui.main_text().startswith(f"#{node['index']} {node['name']}")
    finally:
        driver.quit()
