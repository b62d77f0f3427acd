"""The HTML report of a real run, opened in headless Chromium: it loads with no console
error, every chart is drawn, and a screenshot is kept in target/test-artifacts/."""

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("TURNBENCH_BIN", str(ROOT / "target" / "release" / "turnbench"))
ARTIFACTS = ROOT / "target" / "test-artifacts"
CHARTS = [
    "chart-ttft-by-turn",
    "chart-ttft-cdf",
    "chart-ttft-over-time",
    "chart-e2e-over-time",
    "chart-tokens-per-second",
    "chart-cached-by-turn",
    "chart-errors-over-time",
    "chart-kv-usage-over-time",
    "chart-waiting-over-time",
    "chart-reuse-by-turn",
]
KEY = "sk-browser-test-secret"


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    """report.html of a run against `turnbench sim` with some failures, so that every
    chart, the error one included, has data."""
    sim = subprocess.Popen(
        [BIN, "sim", "--port", "0", "--error-rate", "0.1", "--itl-ms", "1", "--output-tokens", "12",
         "--api-key", KEY],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        url = sim.stdout.readline().split("listening on ")[1].split()[0]
        out = tmp_path_factory.mktemp("run")
        run = subprocess.run(
            [BIN, "run", url, "--conversations", "8", "--turns", "5", "--parallel", "4", "--warmup", "0",
             "--min-delay", "0", "--max-delay", "0.1", "--seed", "5", "--max-error-rate", "0.2",
             "--metrics-url", url[: -len("/v1")] + "/metrics", "--metrics-interval", "0.2",
             "--output-dir", str(out)],
            env={**os.environ, "TURNBENCH_API_KEY": KEY}, capture_output=True, text=True, timeout=120,
        )
        assert run.returncode == 0, run.stderr
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=10)
    return out / "report.html"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "scripts/test.sh installs chromium and chromium-driver"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1500,2600"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager try to download a driver
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    yield driver
    driver.quit()


def test_report_loads_without_console_errors_and_draws_every_chart(report_file, browser):
    from selenium.webdriver.common.by import By

    browser.get(report_file.as_uri())
    assert browser.title.startswith("turnbench report")
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe

    banner = browser.find_element(By.ID, "verdict")
    assert any(s in banner.text for s in ("PASS", "WARN", "FAIL"))
    for chart in CHARTS:
        svg = browser.find_element(By.CSS_SELECTOR, f"#{chart} svg")
        size = svg.size
        assert size["width"] > 300 and size["height"] > 100, (chart, size)
        # drawn, not empty: plotters emits shapes as SVG elements
        shapes = svg.find_elements(By.CSS_SELECTOR, "circle, polyline, rect, line, path")
        assert len(shapes) > 5, chart
    assert "TTFT breakdown: of" in browser.find_element(By.ID, "server").text
    errors = browser.find_element(By.ID, "errors").text
    assert "http_status" in errors
    assert KEY not in browser.page_source

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "report.png"))
