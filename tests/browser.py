"""A headless Chromium driven over the DevTools protocol, for tests of the HTML pages (the reports,
an explorer page): open a file or URL, evaluate JavaScript, click, wait, take screenshots, read the
console's errors and the resources that failed to load.

No dependency beyond Chromium itself: the protocol runs over the two pipes of
``--remote-debugging-pipe`` (the browser reads commands from fd 3 and writes answers and events
to fd 4, each a JSON object ended by a NUL byte). One :class:`Browser` is one Chromium process;
each :meth:`Browser.new_page` is a tab with its own viewport::

    with Browser() as browser:                       # raises BrowserMissing without chromium
        page = browser.new_page(width=1400, height=900)
        page.open(path_or_url)                       # waits for the load event
        height = page.evaluate("document.documentElement.scrollHeight")
        page.click("nav a[href='#grad-cam']")        # a real mouse click at the element's centre
        page.screenshot(out / "top.png")             # the viewport; full_page=True: the whole page
        assert not page.errors()                     # console errors, exceptions, failed loads

:func:`chromium_path` finds the binary (``$CNNVIS_CHROMIUM``, then ``chromium``,
``chromium-browser``, ``google-chrome``); :func:`artifact_dir` is where tests put screenshots.
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["Browser", "BrowserMissing", "BrowserError", "Page", "artifact_dir", "chromium_path"]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserMissing(RuntimeError):
    """No Chromium binary on this machine."""


class BrowserError(RuntimeError):
    """The browser answered a command with an error, died, or did not answer in time."""


def chromium_path() -> str | None:
    """The Chromium binary: ``$CNNVIS_CHROMIUM`` if set, else the first of chromium,
    chromium-browser, google-chrome on PATH; None when there is none."""
    env = os.environ.get("CNNVIS_CHROMIUM")
    if env:
        return env if shutil.which(env) else None
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def artifact_dir(name: str, tmp_path: Path | None = None) -> Path:
    """The folder for a test's screenshots: ``$CNNVIS_TEST_ARTIFACTS/<name>`` when that variable is
    set, else ``<tmp_path>/artifacts`` (pytest keeps its last three tmp folders), else
    ``outputs/test-artifacts/<name>`` under the repository. Created; printed by the caller."""
    root = os.environ.get("CNNVIS_TEST_ARTIFACTS")
    if root:
        d = Path(root) / name
    elif tmp_path is not None:
        d = Path(tmp_path) / "artifacts"
    else:
        d = Path(__file__).resolve().parents[1] / "outputs" / "test-artifacts" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


class Browser:
    """One headless Chromium process (a context manager; :meth:`close` ends it)."""

    def __init__(self, binary: str | None = None, timeout: float = 30.0, extra_args: tuple[str, ...] = ()):
        binary = binary or chromium_path()
        if binary is None:
            raise BrowserMissing("no chromium on PATH (Debian: apt-get install -y chromium; or set CNNVIS_CHROMIUM)")
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="cnnvis-chromium-")
        cmd_r, self._cmd_w = os.pipe()    # we write commands, the browser reads fd 3
        self._ans_r, ans_w = os.pipe()    # the browser writes fd 4, we read answers and events

        def wire_fds():  # in the child, before exec: the pipes as fd 3 and 4 (dup2 clears close-on-exec)
            r, w = os.dup(cmd_r), os.dup(ans_w)   # above 4: neither can be overwritten by the other's dup2
            os.dup2(r, 3)
            os.dup2(w, 4)

        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--remote-debugging-pipe", f"--user-data-dir={self._profile}", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio",
                "--allow-file-access-from-files", *extra_args, "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, close_fds=False, preexec_fn=wire_fds)
        os.close(cmd_r)
        os.close(ans_w)
        self._buf = b""
        self._next_id = 0
        self._events: list[dict] = []
        self.pages: list[Page] = []
        try:
            self.version = self.send("Browser.getVersion")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ protocol
    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        """Send one command and return its ``result``; events that arrive meanwhile are kept."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._cmd_w, data):]
        except OSError as e:
            raise BrowserError(f"chromium is gone ({e}): {self._stderr_tail()}") from e
        want = self._next_id
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = self._read(deadline, f"{method}")
            if m.get("id") == want:
                if "error" in m:
                    raise BrowserError(f"{method}: {m['error'].get('message')} {m['error'].get('data', '')}".strip())
                return m.get("result", {})
            if "method" in m:
                self._events.append(m)

    def wait_event(self, method: str, session: str | None = None, timeout: float | None = None,
                   where=lambda params: True) -> dict:
        """The params of the first kept or arriving event ``method`` (of ``session``) matching ``where``."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for k, e in enumerate(self._events):
                if e["method"] == method and (session is None or e.get("sessionId") == session) and where(e["params"]):
                    del self._events[k]
                    return e["params"]
            m = self._read(deadline, f"event {method}")
            if "method" in m:
                self._events.append(m)

    def _take_events(self, session: str) -> list[dict]:
        """Remove and return the kept events of ``session`` (reading what has arrived so far)."""
        while True:
            ready, _, _ = select.select([self._ans_r], [], [], 0)
            if not ready:
                break
            m = self._read(time.monotonic() + self.timeout, "events")
            if "method" in m:
                self._events.append(m)
        mine = [e for e in self._events if e.get("sessionId") == session]
        self._events = [e for e in self._events if e.get("sessionId") != session]
        return mine

    def _read(self, deadline: float, what: str) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"no answer from chromium within {self.timeout:g} s ({what})")
            ready, _, _ = select.select([self._ans_r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._ans_r, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium closed the pipe ({what}): {self._stderr_tail()}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _stderr_tail(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "still running"
        return self.proc.stderr.read().decode(errors="replace")[-2000:]

    # ------------------------------------------------------------------ pages
    def new_page(self, width: int = 1400, height: int = 900) -> "Page":
        """A new tab with a ``width`` x ``height`` CSS px viewport (device scale 1)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session)
        for method in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            self.send(method, session=session)
        page.set_viewport(width, height)
        self.pages.append(page)
        return page

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("Browser.close", timeout=5)
            except BrowserError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self._cmd_w, self._ans_r):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    """One tab. Errors seen on it (console.error, uncaught exceptions, failed loads) accumulate
    until read with :meth:`errors`."""

    def __init__(self, browser: Browser, target: str, session: str):
        self.browser, self.target, self.session = browser, target, session
        self.width = self.height = 0
        self._errors: list[str] = []
        self._urls: dict[str, str] = {}   # request id -> URL, to name a failed load

    def send(self, method: str, params: dict | None = None, timeout: float | None = None) -> dict:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def set_viewport(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def open(self, target: str | os.PathLike, timeout: float | None = None) -> None:
        """Load a URL, or a local file by path; returns after the page's load event."""
        url = str(target)
        if not url.split(":", 1)[0] in ("http", "https", "file", "about", "data"):
            url = Path(target).resolve().as_uri()
        self._collect()   # what the previous page logged stays for errors()
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"could not open {url}: {result['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session, timeout)

    def evaluate(self, expression: str, timeout: float | None = None) -> Any:
        """The value of a JavaScript expression (promises awaited; the value JSON-serialized)."""
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True,
                                           "userGesture": True}, timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            raise BrowserError(f"JavaScript error: {text}\nin: {expression[:300]}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10.0, interval: float = 0.05) -> Any:
        """Poll ``expression`` until it is truthy and return its value (BrowserError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"still false after {timeout:g} s: {expression[:200]}")
            time.sleep(interval)

    def click(self, selector: str) -> None:
        """Scroll the first element matching ``selector`` into view and click its centre with the
        mouse, as a user would (BrowserError when nothing matches or it has no box)."""
        box = self.evaluate(f"""(() => {{
            const el = document.querySelector({json.dumps(selector)});
            if (!el) return null;
            el.scrollIntoView({{block: 'center', inline: 'center'}});
            const r = el.getClientRects()[0];   // the first line's box: a link that wraps has a gap in the middle
            if (!r || !r.width || !r.height) return 'no box';
            const x = r.left + r.width / 2, y = r.top + r.height / 2;
            const hit = document.elementFromPoint(x, y);
            if (hit !== el && !el.contains(hit))
                return 'covered by ' + (hit ? hit.tagName.toLowerCase() + (hit.id ? '#' + hit.id : '') +
                                        (hit.className ? '.' + hit.className : '') : 'nothing');
            return [x, y];
        }})()""")
        if box is None or isinstance(box, str):
            raise BrowserError(f"click: {'nothing matches' if box is None else box}: {selector}")
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                    "clickCount": 0 if kind == "mouseMoved" else 1})

    def load_all_images(self, timeout: float = 20.0) -> list[dict]:
        """Make every ``<img>`` load now (lazy ones and those in closed ``<details>`` included),
        wait for each to finish, and return ``[{src, naturalWidth, naturalHeight, complete}]``."""
        return self.evaluate(f"""(async () => {{
            const imgs = Array.from(document.images);
            for (const im of imgs) im.loading = 'eager';
            const done = im => new Promise(res => {{
                if (im.complete) return res();
                im.addEventListener('load', res, {{once: true}});
                im.addEventListener('error', res, {{once: true}});
            }});
            const all = Promise.all(imgs.map(done));
            await Promise.race([all, new Promise(res => setTimeout(res, {int(timeout * 1000)}))]);
            return imgs.map(im => ({{src: im.getAttribute('src'), naturalWidth: im.naturalWidth,
                                    naturalHeight: im.naturalHeight, complete: im.complete}}));
        }})()""", timeout=timeout + 10)

    def scroll_height(self) -> int:
        return int(self.evaluate("Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)"))

    def screenshot(self, path: str | os.PathLike, full_page: bool = False) -> Path:
        """A PNG of the viewport (``full_page``: of the whole page, at the viewport's width)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            h = self.scroll_height()
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": self.width, "height": h,
                                                            "scale": 1})
        data = self.send("Page.captureScreenshot", params, timeout=max(self.browser.timeout, 60))["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads since the last call (then forgotten)."""
        self._collect()
        out, self._errors = self._errors, []
        return out

    def _collect(self) -> None:
        for e in self.browser._take_events(self.session):
            p = e["params"]
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                self._errors.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                           for a in p.get("args", [])))
            elif e["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                self._errors.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
            elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                self._errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
            elif e["method"] == "Network.requestWillBeSent":
                self._urls[p["requestId"]] = p.get("request", {}).get("url", "")
            elif e["method"] == "Network.loadingFailed" and not p.get("canceled"):
                self._errors.append(f"load failed: {p.get('errorText')} {self._urls.get(p['requestId'], '')}".strip())
