"""The browser view in a real headless browser (chromium driven by selenium through chromedriver).

Skipped when chromium or its driver is missing, except under CI (environment
variable ``CI`` set), where that is a failure: ``.ci/run`` installs them. The
screenshot of a dataset page is saved in ``$BUTLER_TEST_ARTIFACTS`` (else the
test's temporary directory).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import run_demo, tree_fingerprint

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
OPTIONS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,1400")


@pytest.fixture(scope="module")
def browser():
    missing = [path for path in (CHROMEDRIVER, CHROMIUM) if not os.path.exists(path)]
    if missing:
        message = f"no {' or '.join(missing)}: install chromium and chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for option in OPTIONS:
        options.add_argument(option)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served(tmp_path_factory, module_server):
    repos = run_demo(tmp_path_factory)
    before = tree_fingerprint(repos["dir"])
    yield module_server([repos["input"], repos["v1"], repos["v2"]])
    assert tree_fingerprint(repos["dir"]) == before


def load(browser, url):
    """Open ``url``; return the page's console errors (every SEVERE entry)."""
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(url)
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


DATASET = "/repositories/v1/datasets/postISRCCD?visit=101&detector=0"


@pytest.mark.parametrize("path, text", [
    ("/", "v1"),
    ("/repositories/v1", "postISRCCD"),
    ("/repositories/v1/query?datasetType=src&keys=visit,detector", "103"),
    ("/repositories/v1/datasets/src?visit=101&detector=0", "First rows"),
    ("/api/v1/docs", "/api/v1/repositories/{name}/query"),
    (DATASET, "NAXIS"),
])
def test_each_page_loads_without_console_errors(browser, served, path, text):
    assert load(browser, served.url + path) == []
    assert text in browser.page_source
    assert browser.title.endswith("butler")


def test_the_query_form_leads_to_a_dataset_page(browser, served):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    assert load(browser, served.url + "/repositories/v1") == []
    Select(browser.find_element(By.NAME, "datasetType")).select_by_value("postISRCCD")
    browser.find_element(By.NAME, "where").send_keys("visit=102")
    browser.find_element(By.CSS_SELECTOR, "#query button").click()
    wait = WebDriverWait(browser, 60)
    wait.until(expected_conditions.presence_of_element_located((By.ID, "results")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tr")
    assert len(rows) == 3  # the header row, detectors 0 and 1
    rows[1].find_element(By.TAG_NAME, "a").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "header")))
    assert "visit=102" in browser.current_url and browser.get_log("browser") == []


def test_dataset_page_shows_the_header_table_and_a_preview(browser, served, tmp_path):
    from selenium.webdriver.common.by import By

    assert load(browser, served.url + DATASET) == []
    cells = [row.find_elements(By.TAG_NAME, "td") for row in browser.find_elements(By.CSS_SELECTOR, "#header tr")]
    keywords = [row[0].text for row in cells if row]
    assert keywords[:3] == ["SIMPLE", "BITPIX", "NAXIS"] and "EXPID" in keywords  # as stored
    image = browser.find_element(By.ID, "preview")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0
    png = httpx.get(image.get_attribute("src"))
    assert png.headers["content-type"] == "image/png"
    pixels = np.asarray(Image.open(io.BytesIO(png.content)))
    assert pixels.ndim == 2 and len(np.unique(pixels)) > 16  # an image, not a uniform square
    links = {a.get_attribute("id"): a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "p a")
             if a.get_attribute("id")}
    assert httpx.get(links["bytes"]).content[:6] == b"SIMPLE"
    assert httpx.get(links["header-json"]).json()["cards"][2][0] == "NAXIS"
    directory = Path(os.environ.get("BUTLER_TEST_ARTIFACTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    screenshot = directory / "service-dataset-page.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dataset_page_shows_the_lineage(browser, served):
    from selenium.webdriver.common.by import By

    assert load(browser, served.url + "/repositories/v2/datasets/src?visit=101&detector=0") == []
    lineage = browser.find_element(By.ID, "lineage")
    assert '"threshold"' in lineage.find_element(By.CSS_SELECTOR, "dd.config").text  # the demo's settings
    assert "by " in lineage.find_element(By.CSS_SELECTOR, "dd.run").text
    rows = [row.find_elements(By.TAG_NAME, "td") for row in lineage.find_elements(By.CSS_SELECTOR, "table.inputs tr")]
    inputs = {cells[0].text: cells for cells in rows if len(cells) == 5}
    assert {"raw", "bias", "flat"} <= set(inputs)
    assert inputs["raw"][2].text == served.repo("input") + "/raw/v0101/raw_v0101_d00.fits"
    assert inputs["raw"][3].text == "(no record)" and len(inputs["bias"][3].text) == 64  # the calibrations' digests
    assert "/tmp/" not in lineage.text
    assert load(browser, served.url + "/repositories/input/datasets/raw?visit=101&detector=0") == []
    assert "No provenance record" in browser.find_element(By.ID, "lineage").text
