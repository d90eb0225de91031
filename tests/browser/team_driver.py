"""A team in browsers: several logged-in users label through the page while another retrains.

Used by the team browser test (which checks that nothing acknowledged is lost) and by
``benchmarks/latency.py`` (which reports the click-to-"saved" latency). Each user is one browser
context (its own cookies) driven by Playwright's async API, so every user clicks at once.

The latency is measured inside the page: a capture listener notes ``performance.now()`` at the
pointer-down or key-down that labels, and a poll notes when the page's ``data-saved`` counter
(shown only after the label store committed) changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from browser_support import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, Server

WAIT_MS = 120_000
# The first page waits for the project's preparation (embedding, map, imports of torch and the
# views), shared by every page of the server: on a machine busy with other tests, minutes.
PREPARE_WAIT_MS = 600_000
# A retrain runs in a process of its own at a lower priority: on a busy machine it waits long.
RETRAIN_WAIT_MS = 900_000
# How long a refused retrain (no busy state) may take to reach the page before its error counts.
ACK_S = 5.0

# Installed in every page before its scripts run. The [data-saved] element lives in a shadow root;
# the search caches that root and polls (every 5 ms) only while a label waits for its "saved".
LATENCY_JS = """
(() => {
  const tw = window.__tw = {t0: null, before: null, lat: [], root: null};
  const deep = (root) => {
    const el = root.querySelector('[data-saved]');
    if (el) { tw.root = root; return el; }
    for (const node of root.querySelectorAll('*')) {
      if (node.shadowRoot) { const found = deep(node.shadowRoot); if (found) return found; }
    }
    return null;
  };
  const saved = () => {
    const el = (tw.root && tw.root.querySelector('[data-saved]')) || deep(document);
    return el ? el.getAttribute('data-saved') : null;
  };
  const mark = (event) => {
    if (event.type === 'keydown' && !/^[0-9]$/.test(event.key)) return;
    tw.t0 = performance.now();
    tw.before = saved();
  };
  document.addEventListener('pointerdown', mark, true);
  document.addEventListener('keydown', mark, true);
  setInterval(() => {
    if (tw.t0 === null) return;
    const now = saved();
    if (now !== null && now !== tw.before) { tw.lat.push(performance.now() - tw.t0); tw.t0 = null; }
  }, 5);
  tw.saved = saved;
})();
"""

# Also installed in every page: deeper JS stacks, and on an uncaught error the widgets whose DOM
# controls do not exist (a Bokeh widget view changed before it was rendered: the page errors
# "reading 'removeAttribute'" come from one), reported as a console error beside it.
ERROR_DIAGNOSIS_JS = """
(() => {
  Error.stackTraceLimit = 50;
  const name = (view) => view.model.type + (view.model.css_classes || []).map((c) => '.' + c).join('');
  window.addEventListener('error', () => {
    if (window.Bokeh == null || window.Bokeh.index == null) return;
    const missing = [];
    const walk = (view, path) => {
      const here = path + ' > ' + name(view);
      if (typeof view.controls === 'function' && [...view.controls()].some((el) => el == null)) {
        missing.push(here);
      }
      if (typeof view.children === 'function') for (const child of view.children()) walk(child, here);
    };
    for (const root of window.Bokeh.index.roots) walk(root, '');
    if (missing.length) console.error('widgets without their controls: ' + missing.join(' | '));
  });
})();
"""


# What a failed run leaves beside its screenshot: the parts of the page the driver reads (inside
# shadow roots), so that a stop is explained by the page as it was, not guessed afterwards.
PAGE_STATE_JS = """
(() => {
  const found = {};
  const wanted = ['.tw-selection-count', '.tw-inspector', '.tw-status-box', '.tw-error', '.tw-building'];
  const walk = (root) => {
    for (const selector of wanted) {
      for (const el of root.querySelectorAll(selector)) {
        (found[selector] = found[selector] || []).push(el.outerHTML.slice(0, 600));
      }
    }
    for (const node of root.querySelectorAll('*')) if (node.shadowRoot) walk(node.shadowRoot);
  };
  walk(document);
  return found;
})()
"""


@dataclass
class UserRun:
    """What one user did: acknowledged labels ``(item, label)``, latencies (s), page errors."""

    name: str
    acknowledged: list[tuple[str, str]] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    retrains: int = 0
    started: float = 0.0  # when labelling began (epoch s), to match the server's log


def run(coroutine):
    """Run ``coroutine`` to completion on an event loop of its own, in a worker thread: the sync
    Playwright fixtures of other browser tests leave a loop running in this thread, where
    ``asyncio.run`` refuses to start."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def launch(playwright):
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


async def login(context, server: Server, user: str, password: str, run: UserRun):
    """Open the dashboard in ``context`` through Panel's login form; wait for the whole page."""
    from playwright.async_api import expect

    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    await page.add_init_script(LATENCY_JS)
    await page.add_init_script(ERROR_DIAGNOSIS_JS)
    page.on("pageerror", lambda err: run.page_errors.append(f"pageerror: {err.stack or err}"))
    page.on("console", lambda msg: run.page_errors.append(_console_error(msg))
            if msg.type == "error" else None)
    # The page must not ask another server for anything (an air-gapped lab would see it fail):
    # every request is checked as it is made, before any name lookup could fail.
    page.on("request", lambda request: run.page_errors.append(
        f"request off the server: {request.url}") if leaves_server(request.url, server.url) else None)
    await page.goto(server.url)
    await page.locator("input[name=username]").fill(user)
    await page.locator("input[name=password]").fill(password)
    await page.locator("input[name=password]").press("Enter")
    await expect(page.locator(".tw-label-0").first).to_be_visible(timeout=PREPARE_WAIT_MS)
    # The rest of the page is built view by view after the sidebar (dashboard.app): the user
    # starts once it is all there, the map included.
    await expect(page.locator(".tw-map canvas").first).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator(".tw-building")).to_have_count(0, timeout=WAIT_MS)
    return page


def leaves_server(url: str, page_url: str) -> bool:
    """Whether a request for ``url`` from a page served at ``page_url`` goes to another host
    (``data:`` and the page's own ``blob:`` URLs never leave the browser)."""
    from urllib.parse import urlsplit

    origin = "{0.scheme}://{0.netloc}".format(urlsplit(page_url))
    return not (url.startswith("data:") or url == origin or url.startswith(
        (origin + "/", f"blob:{origin}/")))


def _console_error(msg) -> str:
    """A console error with the URL it came from (a failed resource's console text names none)."""
    where = (msg.location or {}).get("url") or ""
    return f"console: {msg.text}" + (f" [{where}]" if where else "")


async def _saved(page) -> int:
    return int(await page.locator(".tw-status-box [data-saved]").get_attribute("data-saved"))


async def _current_item(page, wait_s: float = WAIT_MS / 1000) -> str | None:
    """The single selected item the inspector shows, or None when not exactly one is selected.

    The count and the inspector are read in two round trips, and the page may change between
    them: after the last item of a batch is labelled, the count read may still say 1 while the
    inspector already says nothing is selected. Waiting for an item id then waited for one that
    never came (the one-user latency run that stopped for 120 s); so a missing id re-reads the
    count. Raises ``TimeoutError`` only when the count stays at 1 without an item id for
    ``wait_s`` seconds (a page whose inspector does not follow its selection).
    """
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    count = page.locator(".tw-selection-count")
    item_id = page.locator(".tw-inspector .tw-item-id")
    deadline = time.monotonic() + wait_s
    while await count.get_attribute("data-count") == "1":
        if await item_id.count():  # does not wait: the id is there now, or the count is re-read
            try:
                return await item_id.get_attribute("data-item", timeout=1000)
            except PlaywrightTimeout:  # the selection moved on between the two reads
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page shows one selected item but its inspector no item id "
                               f"after {wait_s:g} s")
        await asyncio.sleep(0.05)  # polling page state, not a fixed wait
    return None


async def _moved_on(page, item: str) -> None:
    """Wait until the selection left ``item`` (the next queued one, or none after the batch)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while await _current_item(page) == item:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page still shows {item!r} after labelling it")
        await asyncio.sleep(0.1)  # polling page state, not a fixed wait (five pages poll at once)


async def label_items(page, run: UserRun, n: int, choose: Callable[[str, int], str],
                      think_s: float = 0.0, stop: Callable[[], bool] = lambda: False) -> None:
    """Label ``n`` queued items through the page: class buttons and number keys in turn.

    Asks for the next batch whenever nothing is selected. Each label waits for the page's
    "saved" counter before the next; ``(item, label)`` is recorded once acknowledged.
    """
    from playwright.async_api import expect

    run.started = time.time()
    while len(run.acknowledged) < n and not stop():
        item = await _current_item(page)
        if item is None:
            await page.locator(".tw-next-batch button").click()
            await expect(page.locator(".tw-selection-count")).to_have_attribute("data-count", "1",
                                                                               timeout=WAIT_MS)
            continue
        label = choose(item, len(run.acknowledged))
        before = await _saved(page)
        if len(run.acknowledged) % 2:
            await page.keyboard.press(label)
        else:
            await page.locator(f".tw-label-{label} button").click()
        # Waited for in the page: an `expect` that polls builds the page's accessibility tree
        # at every miss (for its failure message), which took a tenth of each labelling page's
        # CPU, on the cores the clicks being timed needed.
        await page.wait_for_function("before => window.__tw.saved() !== before", arg=str(before),
                                     timeout=WAIT_MS)
        run.acknowledged.append((item, label))
        await _moved_on(page, item)
        if think_s:
            await asyncio.sleep(think_s)
    run.latencies_s = [ms / 1000.0 for ms in await page.evaluate("window.__tw.lat")]


async def retrain_loop(page, run: UserRun, stop: Callable[[], bool], pause_s: float = 0.5) -> None:
    """Press Retrain, wait until the model version changes or the page shows why not (too few
    labels at first), repeat until ``stop()``. ``run.retrains`` counts the new models."""
    from playwright.async_api import expect

    version = page.locator(".tw-model-version")
    button = page.locator(".tw-retrain button")
    while not stop():
        before = await version.get_attribute("data-version")
        # A retrain asked earlier may still run (its failure shown before this click was seen, or
        # a slow start of the training process): wait for it to end, counting its model.
        await expect(button).to_be_enabled(timeout=RETRAIN_WAIT_MS)
        if await version.get_attribute("data-version") != before:
            run.retrains += 1
            continue
        # The button may turn disabled between the check above and this click (a click of the
        # previous round seen late by a loaded server): the click then waits for that retrain.
        await button.click(timeout=RETRAIN_WAIT_MS)
        clicked = time.monotonic()
        deadline = clicked + RETRAIN_WAIT_MS / 1000
        seen_busy = False
        while True:  # polling page state: a new version, or the retrain ended with an error
            if await version.get_attribute("data-version") != before:
                run.retrains += 1
                break
            enabled = await button.is_enabled()
            seen_busy = seen_busy or not enabled
            # An error shown before the click (too few labels at first) is not this click's
            # answer until the server has seen the click: the button was disabled since, or a
            # few seconds passed (a retrain refused at once never disables it).
            if (enabled and (seen_busy or time.monotonic() - clicked > ACK_S)
                    and await page.locator(".tw-error").count()):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"a retrain neither finished nor failed within "
                                   f"{RETRAIN_WAIT_MS // 1000} s")
            await asyncio.sleep(0.1)
        await asyncio.sleep(pause_s)


async def write_failure(page, run: UserRun, err: BaseException, path) -> None:
    """Write why ``run`` stopped: the error, the page's errors so far and the state of the parts
    of the page the driver reads (the selection count, the inspector, the status line)."""
    import json

    try:
        shown = await page.evaluate(PAGE_STATE_JS)
    except Exception as read_err:  # noqa: BLE001  (a closed page: say so in the file)
        shown = {"could not read the page": repr(read_err)}
    path.write_text("\n".join([
        f"{run.name} stopped after {len(run.acknowledged)} acknowledged labels at "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC: {type(err).__name__}: {err}",
        "", "page errors:", *(run.page_errors or ["(none)"]),
        "", "page state:", json.dumps(shown, indent=1)]), encoding="utf-8")


async def team_session(server: Server, users: dict[str, str], n_labels: int,
                       choose: Callable[[str, int], str], trainer: str | None = None,
                       think_s: float = 0.0) -> tuple[list[UserRun], UserRun | None, float]:
    """Every user in ``users`` (name: password) labels ``n_labels`` items at once while
    ``trainer`` (one of ``users``) retrains in a loop. Returns the runs and the wall time (s)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await launch(playwright)
        labellers = [u for u in users if u != trainer]
        runs = [UserRun(u) for u in labellers]
        trainer_run = UserRun(trainer) if trainer else None
        contexts = []
        pages = []
        for run in runs + ([trainer_run] if trainer_run else []):
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            contexts.append(context)
            pages.append(await login(context, server, run.name, users[run.name], run))
        done = {"labelling": False}
        start = time.monotonic()

        async def labeller(page, run):
            try:
                await label_items(page, run, n_labels, choose, think_s=think_s)
            except Exception as err:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=SCREENSHOTS / f"team-failure-{run.name}.png", full_page=True)
                await write_failure(page, run, err, SCREENSHOTS / f"team-failure-{run.name}.txt")
                raise

        tasks = [labeller(p, r) for p, r in zip(pages, runs)]
        trainer_task = None
        if trainer_run:
            trainer_task = asyncio.create_task(
                retrain_loop(pages[-1], trainer_run, stop=lambda: done["labelling"]))
        try:
            await asyncio.gather(*tasks)
        finally:
            done["labelling"] = True
        elapsed = time.monotonic() - start
        if trainer_task is not None:
            await trainer_task
        for context in contexts:
            await context.close()
        await browser.close()
    return runs, trainer_run, elapsed
