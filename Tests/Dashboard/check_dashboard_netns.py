#!/usr/bin/env python3
"""Checks that the dashboard keeps another network namespace's row apart from ours.

Usage: check_dashboard_netns.py URL PORT NETNS
Waits (bounded) for the rows of tcp/PORT on the host and in NETNS, clicks the namespace's row,
waits for its chart title, and prints one JSON object: {"host": [cells], "netns": [cells],
"title": "..."}. Exit 0 on success, 1 when an expected element never appeared (the error is on
stderr), 77 when selenium is missing. Run by Tests/PortwatchMonitorTests/DashboardTests.swift.
"""
import json
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
    url, port, netns = sys.argv[1], sys.argv[2], sys.argv[3]
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        options.binary_location = chromium
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(service=service, options=options)
    host_id, netns_id = "port-tcp-" + port, "port-%s-tcp-%s" % (netns, port)
    title = "%s tcp/%s" % (netns, port)
    try:
        driver.set_page_load_timeout(30)
        driver.get(url)
        wait = WebDriverWait(driver, 30)
        wait.until(EC.presence_of_element_located((By.ID, host_id)))
        wait.until(EC.presence_of_element_located((By.ID, netns_id)))
        # The table is re-rendered on every sample: click through a script, by id, in one step.
        driver.execute_script("document.getElementById(arguments[0]).click();", netns_id)
        wait.until(EC.text_to_be_present_in_element((By.ID, "chart-port"), title))
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#chart-connections canvas")))
        page = driver.execute_script("""
            const cells = id => { const r = document.getElementById(id); return r ? Array.from(r.cells).map(c => c.innerText) : null; };
            return { host: cells(arguments[0]), netns: cells(arguments[1]),
                     title: document.getElementById('chart-port').innerText };""", host_id, netns_id)
        print(json.dumps(page))
        return 0
    except Exception as error:
        print("dashboard check failed: %s: %s" % (type(error).__name__, error), file=sys.stderr)
        print(driver.page_source[:4000], file=sys.stderr)
        return 1
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
