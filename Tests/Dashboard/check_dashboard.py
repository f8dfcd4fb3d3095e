#!/usr/bin/env python3
"""Loads the portwatch dashboard in headless Chromium and reports what its DOM holds.

Usage: check_dashboard.py URL PORT SCREENSHOT
Waits (bounded) for the row of tcp/PORT and for a drawn chart, saves a screenshot, and prints one
JSON object: {"row": [cells...], "charts": n, "status": "...", "events": n}. Exit 0 on success,
1 when an expected element never appeared (the error is on stderr), 77 when selenium is missing.
Run by Tests/PortwatchMonitorTests/DashboardTests.swift.
"""
import json
import os
import shutil
import sys

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    print("selenium is not installed (pip install selenium)", file=sys.stderr)
    sys.exit(77)


def main():
    url, port, screenshot = sys.argv[1], sys.argv[2], sys.argv[3]
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1200"):
        options.add_argument(arg)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        options.binary_location = chromium
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(url)
        wait = WebDriverWait(driver, 30)
        wait.until(EC.presence_of_element_located((By.ID, "port-tcp-" + port)))
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#chart-connections canvas")))
        wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "live"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#events li:not(.empty)"))
        # A live page re-renders its table every sample: read the DOM in one script run, so no
        # element found earlier can have been replaced in between.
        page = driver.execute_script("""
            const row = document.getElementById(arguments[0]);
            return {
              row: row ? Array.from(row.cells).map(c => c.innerText) : null,
              charts: document.querySelectorAll('.chart canvas').length,
              status: document.getElementById('status').innerText,
              events: document.querySelectorAll('#events li:not(.empty)').length,
              alerts: Array.from(document.querySelectorAll('#alerts li.alert-firing')).map(li => li.innerText),
            };""", "port-tcp-" + port)
        cells, charts, status, events, alerts = page["row"], page["charts"], page["status"], page["events"], page["alerts"]
        if cells is None:
            raise RuntimeError("the row of tcp/%s disappeared" % port)
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"] if hasattr(driver, "get_log") else []
        driver.save_screenshot(screenshot)
        print(json.dumps({"row": cells, "charts": charts, "status": status, "events": events, "alerts": alerts,
                          "console_errors": [e.get("message") for e in errors]}))
        return 0
    except Exception as error:  # report what the page showed, then fail
        try:
            driver.save_screenshot(screenshot)
        except Exception:
            pass
        print("dashboard check failed: %s: %s" % (type(error).__name__, error), file=sys.stderr)
        print(driver.page_source[:4000], file=sys.stderr)
        return 1
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
