"""Timing HTML views in headless Chromium: time until drawn, crashes and timeouts, JS heap, interaction time.

"Drawn" is measured in the page, from navigation start (``performance.timeOrigin``: reading and parsing the file
count) to the end of the first frame painted after a view-specific condition holds. An init script checks the
condition once per animation frame; when it first holds, the next ``requestAnimationFrame`` callback runs only after
that frame's style, layout and paint, and its ``performance.now()`` is the reported time.

Each measurement gets a fresh browser, so a crash or a timeout of one tool never touches the next measurement.
Requests to the network are intercepted: the files in ``cdn`` (URL -> local path) are served from disk and
every other non-file request is counted and aborted.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 1000}
SLOW_MS = 10_000  # an interaction slower than this is not repeated

_WATCH = """
(() => {
  const b = window.__bench = { seen: null, drawn: null };
  const holds = () => { try { return !!(%s); } catch (e) { return false; } };
  const tick = () => {
    if (holds()) {
      b.seen = performance.now();
      requestAnimationFrame(() => { b.drawn = performance.now(); });
    } else {
      requestAnimationFrame(tick);
    }
  };
  requestAnimationFrame(tick);
})();
"""

# Runs `action` (a JS function body with `root` in scope), then waits for the frame after it is painted.
_INTERACT = """
async ([selector, body]) => {
  const root = document.querySelector(selector);
  const action = new Function("root", body);
  const t0 = performance.now();
  action(root);
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return performance.now() - t0;
}
"""

ATTNSCOPE_DRAWN = "document.querySelector('.attnscope[data-view]:not(.as-embedded)[data-state]') && " \
                  "['drawn', 'error'].includes(document.querySelector('.attnscope[data-view]:not(.as-embedded)')" \
                  ".dataset.state)"

# What an attnscope page drew: its state; its thumbnails or line canvas ("canvases") and how many of them hold more
# than one colour ("painted": a heatmap or lines on a transparent background); the head view's line count. The model
# view paints every thumbnail into one canvas.as-thumbs, under one transparent button.as-thumb per head: each
# button's rectangle is read back from that canvas.
ATTNSCOPE_CHECK = """
() => {
  const root = document.querySelector('.attnscope[data-view]:not(.as-embedded)');
  const varied = (d) => {
    for (let p = 4; p < d.length; p += 4) {
      if (d[p] !== d[0] || d[p + 1] !== d[1] || d[p + 2] !== d[2] || d[p + 3] !== d[3]) return true;
    }
    return false;
  };
  let canvases = 0, painted = 0;
  const grid = root.querySelector('canvas.as-thumbs');
  if (grid) {
    const g = grid.getContext('2d'), box = grid.getBoundingClientRect();
    const sx = grid.width / box.width, sy = grid.height / box.height;
    for (const b of root.querySelectorAll('button.as-thumb')) {
      canvases++;
      const r = b.getBoundingClientRect();
      const x = Math.round((r.left - box.left) * sx), y = Math.round((r.top - box.top) * sy);
      const w = Math.max(1, Math.round(r.width * sx)), h = Math.max(1, Math.round(r.height * sy));
      if (varied(g.getImageData(x, y, w, h).data)) painted++;
    }
  }
  for (const c of root.querySelectorAll('canvas.as-lines')) {
    canvases++;
    if (varied(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)) painted++;
  }
  return { state: root.dataset.state, canvases, painted, lines: Number(root.dataset.lines || 0),
           error: root.dataset.state === 'error' ? root.textContent : null };
}
"""


@dataclass
class Result:
    """One page load: ``status`` is "ok", "timeout", "crash" or "error"; ``ms`` is the time until drawn."""

    status: str
    ms: float | None = None
    detail: str = ""
    check: dict = field(default_factory=dict)
    heap_mb: float | None = None
    renderer_peak_mb: float | None = None
    interactions_ms: list[float] = field(default_factory=list)
    after: str = ""  # what went wrong after drawing (check, interactions, heap), if anything
    blocked: list[str] = field(default_factory=list)

    def cell(self) -> str:
        """The table cell for the time until drawn."""
        if self.status == "ok":
            return f"{self.ms / 1000:.2f} s" if self.ms >= 1000 else f"{self.ms:.0f} ms"
        return self.status + (f" ({self.detail})" if self.detail else "")


class _RendererMemory:
    """Samples the summed RSS of Chromium renderer processes started by this process (peak over the run)."""

    def __init__(self, period: float = 0.05):
        self.period, self.peak, self._stop = period, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in me.children(recursive=True):
                try:
                    if "--type=renderer" in " ".join(p.cmdline()):
                        total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.period)

    def __enter__(self) -> _RendererMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class _Watchdog:
    """Kills this process's Chromium after ``seconds``: a renderer busy in one long task never answers
    Playwright, so its own timeouts cannot fire."""

    def __init__(self, seconds: float):
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        for p in psutil.Process().children(recursive=True):
            try:
                if "chrom" in p.name().lower():
                    p.kill()
            except psutil.Error:
                pass

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()


class Chromium:
    """A Playwright driver that opens each page in a fresh headless Chromium (use as a context manager)."""

    def __enter__(self) -> Chromium:
        self._pw = sync_playwright().start()
        return self

    def __exit__(self, *exc) -> None:
        self._pw.stop()

    def measure(self, path: Path, drawn: str, *, timeout: float = 120.0, cdn: dict[str, Path] | None = None,
                check: str | None = None, interactions: tuple[str, list[str]] | None = None,
                memory: bool = False) -> Result:
        """Open ``path`` and time it until the JS expression ``drawn`` holds and the next frame is painted.

        ``check`` (a JS function) is evaluated afterwards and its result kept; ``interactions`` is
        ``(root selector, [action JS bodies])``: each action is timed until the frame after it
        is painted. ``memory=True`` records the JS heap after drawing and the renderer's peak RSS.
        """
        cdn = cdn or {}
        blocked: list[str] = []
        browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.add_init_script(_WATCH % drawn)

            def route(r):
                url = r.request.url
                if url in cdn:
                    r.fulfill(path=str(cdn[url]), content_type="application/javascript")
                elif url.startswith(("file:", "data:", "blob:", "about:")):
                    r.continue_()
                else:
                    blocked.append(url)
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            with _RendererMemory() if memory else contextlib.nullcontext() as sampler:
                result = _load(page, path, timeout, check, interactions, memory)
            if sampler:
                result.renderer_peak_mb = sampler.peak / 1e6
            result.blocked = blocked
            return result
        finally:
            with contextlib.suppress(PlaywrightError):
                browser.close()


def _load(page, path: Path, timeout: float, check: str | None, interactions, memory: bool) -> Result:
    """Open and time one page; after drawing, run the check, the interactions (stopping after one slower than
    ``SLOW_MS``) and the heap reading, under a second watchdog of ``timeout`` seconds."""
    crashed: list[bool] = []
    errors: list[str] = []
    page.on("crash", lambda _: crashed.append(True))
    page.on("pageerror", lambda e: errors.append(str(e).splitlines()[0][:120]))
    start = time.monotonic()
    try:
        with _Watchdog(timeout) as dog:
            page.goto(path.resolve().as_uri(), wait_until="commit", timeout=timeout * 1000)
            page.wait_for_function("window.__bench && window.__bench.drawn !== null", timeout=timeout * 1000,
                                   polling=250)
            result = Result("ok", ms=page.evaluate("window.__bench.drawn"))
    except PlaywrightError as err:
        if dog.fired or isinstance(err, PlaywrightTimeout):
            note = f"; page error: {errors[0]}" if errors else ""
            return Result("timeout", detail=f"> {timeout:.0f} s{note}")
        if crashed:
            return Result("crash", detail=f"after {time.monotonic() - start:.0f} s")
        if errors:
            return Result("error", detail=errors[0])
        return Result("error", detail=str(err).splitlines()[0][:120])
    try:
        with _Watchdog(timeout) as dog:
            if check:
                result.check = page.evaluate(check)
            if interactions:
                selector, actions = interactions
                for body in actions:
                    result.interactions_ms.append(page.evaluate(_INTERACT, [selector, body]))
                    if result.interactions_ms[-1] > SLOW_MS:
                        break
            if memory:
                cdp = page.context.new_cdp_session(page)
                result.heap_mb = cdp.send("Runtime.getHeapUsage")["usedSize"] / 1e6
    except PlaywrightError as err:
        what = "timeout" if dog.fired or isinstance(err, PlaywrightTimeout) else "crash" if crashed else "error"
        result.after = f"{what} after drawing ({str(err).splitlines()[0][:80]})"
    return result
