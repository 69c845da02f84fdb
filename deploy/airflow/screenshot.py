"""Headless check of the Airflow UI: log in with an API token and save a PNG of a page.

    python -m deploy.airflow.screenshot OUT.png [--path /dags]

Drives Debian's chromium over its DevTools protocol (the `websockets` package): the simple auth
manager's UI accepts the JWT in its `_token` cookie, so the login form is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from deploy.airflow import stack

CHROMIUM = "/usr/bin/chromium"


def fetch_token(config: stack.StackConfig) -> str:
    """POST /auth/token with the generated admin password."""
    body = json.dumps(
        {"username": stack.ADMIN_USER, "password": stack.read_admin_password(config)}
    ).encode()
    request = urllib.request.Request(  # noqa: S310 (loopback URL we built)
        config.base_url + "/auth/token", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
        return json.loads(resp.read())["access_token"]


def wait_debugger_url(port: int, timeout: float = 30) -> str:
    """The websocket URL of chromium's first page target."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            url = f"http://127.0.0.1:{port}/json/list"
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310
                pages = [t for t in json.loads(resp.read()) if t["type"] == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("chromium's DevTools endpoint did not answer")


async def capture(ws_url: str, base_url: str, token: str, path: str, settle: float) -> bytes:
    """Set the `_token` cookie, open the page, wait for it to render, return a PNG."""
    import websockets

    ids = itertools.count(1)
    async with websockets.connect(ws_url, max_size=None) as ws:

        async def send(method: str, **params: object) -> dict:
            msg_id = next(ids)
            await ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
            while True:
                reply = json.loads(await ws.recv())
                if reply.get("id") == msg_id:
                    return reply.get("result", {})

        await send("Network.enable")
        await send("Network.setCookie", name="_token", value=token, url=base_url + "/")
        await send(
            "Emulation.setDeviceMetricsOverride",
            width=1400,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        await send("Page.navigate", url=base_url + path)
        await asyncio.sleep(settle)
        shot = await send("Page.captureScreenshot", format="png")
    return base64.b64decode(shot["data"])


def take_screenshot(config: stack.StackConfig, out: Path, path: str, settle: float) -> Path:
    port = stack.find_free_port()
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(  # noqa: S603
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={port}",
                "--remote-debugging-address=127.0.0.1",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            ws_url = wait_debugger_url(port)
            png = asyncio.run(capture(ws_url, config.base_url, fetch_token(config), path, settle))
        finally:
            browser.terminate()
            browser.wait(10)
    out.write_bytes(png)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--path", default="/dags", help="UI page to capture")
    parser.add_argument("--settle", type=float, default=8, help="seconds to let the page render")
    args = parser.parse_args(argv)
    config = stack.load_config(stack.default_airflow_home())
    if config is None:
        print("no Airflow started here: run `make airflow` first", file=sys.stderr)
        return 2
    print(take_screenshot(config, args.out, args.path, args.settle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
