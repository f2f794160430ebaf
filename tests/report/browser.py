"""Check a generated report in headless Chromium (Debian's chromium + chromium-driver)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PYTHON_ERROR_MARKERS = ("Traceback (most recent call last)", "Error Traceback",
                        "PapermillExecutionError")


@dataclass
class PageCheck:
    url: str
    title: str
    images: int
    broken_images: list[str] = field(default_factory=list)
    python_errors: list[str] = field(default_factory=list)


def chromium_or_skip() -> tuple[str, str]:
    """Paths of chromium and chromedriver, or skip the test saying what is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("headless Chromium not found: install Debian packages chromium and "
                    "chromium-driver (make test does so when run as root)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install 'evtools[dev]')")
    return browser, driver


def check_report(index: Path) -> list[PageCheck]:
    """Open ``index`` and every page it links to (file:// only: no network)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    browser, driver_path = chromium_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    checks: list[PageCheck] = []
    try:
        driver.get(index.resolve().as_uri())
        links = [a.get_attribute("href") for a in driver.find_elements(By.TAG_NAME, "a")]
        linked = {h for h in links if h and h.startswith("file://") and h.endswith(".html")}
        pages = [index.resolve().as_uri(), *sorted(linked)]
        for url in pages:
            driver.get(url)
            images = driver.find_elements(By.TAG_NAME, "img")
            broken = [str(img.get_attribute("src"))[:80] for img in images
                      if not driver.execute_script(
                          "return arguments[0].complete && arguments[0].naturalWidth > 0 "
                          "&& arguments[0].naturalHeight > 0", img)]
            text = driver.find_element(By.TAG_NAME, "body").text
            errors = [m for m in PYTHON_ERROR_MARKERS if m in text]
            checks.append(PageCheck(url=url, title=driver.title, images=len(images),
                                    broken_images=broken, python_errors=errors))
    finally:
        driver.quit()
    return checks
