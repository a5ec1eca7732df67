"""Screenshot of the operator dashboard (for docs/dashboard.png), from the real page in chromium.

Copies WORKSPACE to a temporary directory (the original is never changed), serves the copy on
127.0.0.1, forgets a few training records through the API so the grid shows cut and served
stages, and saves a full-page screenshot taken by Debian's chromium (selenium, no downloads).

    python scripts/dashboard_screenshot.py WORKSPACE docs/dashboard.png [--forgets 2] [--width 1400]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from s3t.service import create_app

TOKEN = "screenshot-token"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspace", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--forgets", type=int, default=2, help="records to forget, each in another shard/slice")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1000, help="minimum height; the page's full height is used")
    args = ap.parse_args()
    os.environ["SE_OFFLINE"] = "true"
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        shutil.copytree(args.workspace, ws, ignore=shutil.ignore_patterns("token", "read_token", "train.lock"))
        app = create_app(ws, token=TOKEN, read_token=TOKEN, background=False)
        model = app.state.model
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 300
        while not srv.started and time.monotonic() < deadline:
            time.sleep(0.1)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        try:
            by_place = {}
            for r in model.ws_.ledger.records("train"):
                by_place.setdefault((r.shard, r.slice), r.id)
            plan = model.config.plan
            places = [(i % plan.shards, (i * 2 + 1) % plan.slices) for i in range(args.forgets)]
            with httpx.Client(base_url=base, timeout=600) as client:
                auth = {"Authorization": f"Bearer {TOKEN}"}
                client.get("/dashboard/data", headers=auth).raise_for_status()  # measure the accuracy before any forget
                for place in places:
                    r = client.post("/forget", json={"record_ids": [by_place[place]]}, headers={"Authorization": f"Bearer {TOKEN}"})
                    r.raise_for_status()
                    client.get("/dashboard/data", headers=auth).raise_for_status()  # one measured accuracy point per manifest
            shoot(base, args.out, args.width, args.height)
        finally:
            srv.should_exit = True
            thread.join(timeout=60)
    print(f"wrote {args.out}")


def shoot(base: str, out: Path, width: int, height: int) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars",
                f"--window-size={width},{height}", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--proxy-server=http://127.0.0.1:9"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path="/usr/bin/chromedriver"))
    try:
        driver.set_page_load_timeout(120)
        driver.get(base + "/#token=" + TOKEN)  # the read token, as a fragment the page keeps in sessionStorage
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "live").get_attribute("data-locked") == "false")
        driver.find_element(By.ID, "audit-run").click()
        WebDriverWait(driver, 120).until(lambda d: d.find_element(By.ID, "audit-result").get_attribute("data-ok") is not None)
        full = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, max(height, int(full) + 140))  # + the window's chrome in headless mode
        time.sleep(0.5)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
