#!/usr/bin/env python3
"""Loads the portwatch dashboard in headless Chromium and waits for a probe row to show a state.

Usage: check_probes.py URL ROW_ID TEXT
Waits (bounded) until the row ROW_ID of the probes table has a state cell containing TEXT, then
prints one JSON object: {"cells": [...], "visible": bool}. Exit 0 on success, 1 when it never did
(the page is on stderr), 77 when selenium is missing.
Run by Tests/PortwatchMonitorTests/ProbeDashboardTests.swift.
"""
import json
import shutil
import sys

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    print("selenium is not installed (pip install selenium)", file=sys.stderr)
    sys.exit(77)

READ_ROW = """
    const row = document.getElementById(arguments[0]);
    return row ? {cells: Array.from(row.cells).map(c => c.innerText),
                  visible: !document.getElementById('probes-section').hidden} : null;"""


def main():
    url, row_id, text = sys.argv[1], sys.argv[2], sys.argv[3]
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        options.binary_location = chromium
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(url)

        def shown(d):
            row = d.execute_script(READ_ROW, row_id)
            return row if row and len(row["cells"]) > 1 and text in row["cells"][1] else False

        row = WebDriverWait(driver, 30).until(shown)
        print(json.dumps(row))
        return 0
    except Exception as error:
        print("probe check failed: %s: %s" % (type(error).__name__, error), file=sys.stderr)
        print(driver.page_source[:4000], file=sys.stderr)
        return 1
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
