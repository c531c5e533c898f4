"""Drives acap-server's chat page in headless Chromium (the Debian package) with Playwright:
types a message, sends it, waits for the streamed reply, reads it and the telemetry table,
and saves a screenshot. Prints one JSON object; exit 1 on any failure.

usage: browser_chat.py URL MESSAGE SCREENSHOT.png
"""
import json
import sys

from playwright.sync_api import sync_playwright

url, message, shot = sys.argv[1:4]
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("#capinfo:not(:empty)", timeout=30_000)
    page.fill("#max", "12")
    page.fill("#input", message)
    page.click("#send")
    page.wait_for_selector('.assistant[data-done="1"], .error', timeout=120_000)
    reply = page.inner_text(".assistant") if page.query_selector(".assistant") else ""
    error = page.inner_text(".error") if page.query_selector(".error") else ""
    rows = page.eval_on_selector_all("#blocks tr", "rows => rows.length")
    summary = page.inner_text("#telemetry")
    page.screenshot(path=shot)
    browser.close()
print(json.dumps({"reply": reply, "error": error, "telemetry_rows": rows,
                  "telemetry": summary, "page_errors": errors}))
