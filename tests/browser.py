"""Headless Chromium (Debian `chromium`) driven over the DevTools protocol, for tests that
check what a person sees: navigate, run a line of JavaScript, take a screenshot.

Flags keep it off the network (the workplace's closed network refuses Google's hosts) and
on loopback only.
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]
START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 15.0


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """``async with Browser(width, height) as page:`` one tab; ``await page.goto(url)``,
    ``await page.evaluate(js)``, ``await page.screenshot(path)``."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        self.size = (width, height)
        self._ids = itertools.count(1)

    async def __aenter__(self) -> "Browser":
        binary = chromium_binary()
        if binary is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        self._profile = tempfile.mkdtemp(prefix="roombox-chromium-")
        self._proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self._profile}",
                                       f"--window-size={self.size[0]},{self.size[1]}", "about:blank"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self._profile) / "DevToolsActivePort"
        async with asyncio.timeout(START_TIMEOUT_S):
            while not port_file.exists() or not port_file.read_text().strip():
                await asyncio.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            self._http = aiohttp.ClientSession()
            while True:
                async with self._http.get(f"http://127.0.0.1:{port}/json/list") as response:
                    pages = [t for t in await response.json() if t["type"] == "page"]
                if pages:
                    break
                await asyncio.sleep(0.05)
            self._ws = await self._http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=64 * 2**20)
        await self.call("Page.enable")
        await self.call("Runtime.enable")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._ws.close()
            await self._http.close()
        finally:
            self._proc.terminate()
            try:
                await asyncio.to_thread(self._proc.wait, 10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            shutil.rmtree(self._profile, ignore_errors=True)

    async def call(self, method: str, **params: Any) -> dict:
        ident = next(self._ids)
        await self._ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        async with asyncio.timeout(CALL_TIMEOUT_S):
            async for message in self._ws:
                data = json.loads(message.data)
                if data.get("id") == ident:
                    if "error" in data:
                        raise RuntimeError(f"chromium: {method} failed: {data['error']}")
                    return data.get("result", {})
        raise RuntimeError(f"chromium: connection closed during {method}")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"chromium: {expression!r} threw {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    async def wait_for(self, condition: str, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not await self.evaluate(f"Boolean({condition})"):
                await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> Path:
        data = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(data["data"]))
        return path
