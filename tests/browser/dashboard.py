"""Drives the dashboard in headless Chromium the way people would, and prints what it saw.

Usage: dashboard.py URL TOKEN VIEWER_TOKEN NOW_MS ACME_EVENTS SCREENSHOT

It pins the browser's clock to NOW_MS (the service under test runs on a manual clock), starts
without a token, tries a wrong one, then the right one. Then it asks the test for a burst of
failures (a line `{"step": "burst"}` on stdout, answered by a line on stdin) and waits for the
burst's alert to appear live and for the page to have counted ACME_EVENTS events; reads every
section's numbers, saves a screenshot, changes the period selectors, opens a failure's details,
opens a second page with the same token and a third with a read-only one, acknowledges and
snoozes issues from the first and watches the others follow, turns the tenant's alerts off with
rules and waits for the live alert list to follow, and opens the page on one integration. Every
RPC the first page sends is recorded, so the Rust test can replay each one over gRPC and compare.
The last line on stdout is one JSON document; the test does all the judging.
"""

import datetime
import json
import sys
import time

from playwright.sync_api import TimeoutError as PlaywrightTimeout, sync_playwright

URL, TOKEN, VIEWER_TOKEN = sys.argv[1], sys.argv[2], sys.argv[3]
NOW_MS, ACME_EVENTS, SCREENSHOT = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
# The integration the test's burst of failures is about.
# As an alert's dashboard link names an integration: <type>:<id>.
FOCUS = "custom_node:dash-crm"
SERVICE = "/integration_health.v1.IntegrationHealth/"
SECTIONS = ["alerts", "overview", "change", "errors", "trends", "integrations", "failures",
            "rules", "catalog"]
# Chromium's own background traffic is switched off, so anything else the page asks for is the
# page's doing.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]

SCRAPE = """() => {
  const num = (el) => el ? Number(el.dataset.value) : null;
  const rows = (sel) => [...document.querySelectorAll(sel)];
  const out = {ranges: {}, states: {}};
  for (const s of document.querySelectorAll('main section')) {
    out.states[s.id] = s.querySelector('.body').dataset.state;
    const r = s.querySelector('.range');
    if (r) out.ranges[s.id] = r.textContent;
  }
  out.overview = Object.fromEntries(rows('#overview table.legend tbody tr').map((tr) => [tr.dataset.type, {
    failed: num(tr.querySelector('[data-field=failed]')),
    succeeded: num(tr.querySelector('[data-field=succeeded]')),
    share: tr.querySelector('[data-field=share]').textContent,
  }]));
  out.overview_total = num(document.querySelector('#overview tfoot [data-field=total]'));
  out.overview_classes = Object.fromEntries(rows('#overview table.classes tbody tr').map((tr) => [tr.dataset.class, {
    failed: num(tr.querySelector('[data-field=failed]')),
    share: tr.querySelector('[data-field=share]').textContent,
    pressed: tr.querySelector('button').getAttribute('aria-pressed') === 'true',
  }]));
  out.failure_class = document.querySelector('#failure-class').value;
  out.change = Object.fromEntries(rows('#change tbody tr').map((tr) => [tr.dataset.type,
    Object.fromEntries([...tr.querySelectorAll('[data-field]')].map((td) => [td.dataset.field, td.dataset.value]))]));
  out.errors = Object.fromEntries(rows('#errors tbody tr').map((tr) => [tr.dataset.code,
    num(tr.querySelector('[data-field=failed]'))]));
  out.trends = Object.fromEntries(rows('#trends tbody tr').map((tr) => [tr.dataset.bucket,
    Object.fromEntries([...tr.querySelectorAll('td')].map((td) => [td.dataset.field, Number(td.dataset.value)]))]));
  out.integrations = Object.fromEntries(rows('#integrations tbody tr').map((tr) => [tr.dataset.integration, {
    failed: num(tr.querySelector('[data-field=failed]')),
    succeeded: num(tr.querySelector('[data-field=succeeded]')),
    failure_rate: num(tr.querySelector('[data-field=failure_rate]')),
    retried: num(tr.querySelector('[data-field=retried]')),
    recovered: num(tr.querySelector('[data-field=recovered]')),
  }]));
  const live = document.querySelector('#live');
  out.live = {state: live.dataset.state, version: live.dataset.version || null};
  out.failures = rows('#failures tbody tr').map((tr) => ({
    id: tr.dataset.failureId,
    total_errors: num(tr.querySelector('[data-field=total_errors]')),
    description: tr.querySelector('[data-field=description]').textContent,
    issue: tr.querySelector('[data-field=issue] .issue-state').textContent,
    acted_at: tr.querySelector('[data-field=issue]').dataset.actedAt,
    buttons: tr.querySelectorAll('.issue-action').length,
    code: Number(tr.dataset.code),
  }));
  out.alerts = rows('#alerts li').map((li) => ({id: li.dataset.alertId, state: li.dataset.state,
    integration: li.dataset.integration, severity: li.dataset.severity,
    link: li.querySelector('a') ? li.querySelector('a').getAttribute('href') : null,
    value: Number(li.querySelector('.measured').dataset.value),
    threshold: Number(li.querySelector('.measured').dataset.threshold),
    min_volume: Number(li.querySelector('.measured').dataset.minVolume)}));
  out.alerts_empty = document.querySelector('#alerts .body').dataset.state === 'empty'
    ? document.querySelector('#alerts .body').textContent : null;
  out.drivers = Object.fromEntries(rows('#change .drivers li').map((li) => [li.dataset.type,
    [...li.querySelectorAll('.driver')].map((d) => [d.dataset.key, Number(d.dataset.value)])]));
  out.rules = rows('#rules table.rules tbody tr').map((tr) => tr.dataset.scope);
  out.effective = rows('#rules table.effective tbody tr').map((tr) => ({kind: tr.dataset.kind,
    fields: [...tr.querySelectorAll('li')].map((li) => [li.dataset.name, li.dataset.value, li.dataset.origin])}));
  const caller = document.querySelector('#caller');
  out.caller = {text: caller.textContent, may_write: caller.dataset.mayWrite || null};
  out.focused = rows('#integrations tr.focus').map((tr) => tr.dataset.integration);
  out.failure_integrations = rows('#failures tbody tr').map((tr) => tr.dataset.integration);
  out.catalog = Object.fromEntries(rows('#catalog tbody tr').map((tr) => [tr.dataset.code,
    Object.fromEntries([...tr.querySelectorAll('td[data-type]')].map((td) => [td.dataset.type, td.textContent]))]));
  return out;
}"""


# The new parts' text, each against the background it is drawn on.
CONTRAST_OF = ["#caller", "#alerts li", "#alerts li .badge", "#alerts .severity", "#alerts li a",
               "#alerts li .muted", "#failures .acted-at", "#failures .issue-action",
               "#failures select.snooze-for", "#rules .field-name", "#rules .origin",
               "#overview .class-filter"]

# WCAG 2 contrast: the worst ratio of text colour to the first opaque background behind it, per
# selector (null when nothing matches).
CONTRAST = """(selectors) => {
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const behind = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  return Object.fromEntries(selectors.map((sel) => {
    let worst = null;
    for (const el of document.querySelectorAll(sel)) {
      const [hi, lo] = [lum(rgb(getComputedStyle(el).color)), lum(behind(el))].sort((a, b) => b - a);
      const ratio = (hi + 0.05) / (lo + 0.05);
      worst = worst === null ? ratio : Math.min(worst, ratio);
    }
    return [sel, worst];
  }));
}"""


def wait_ready(page, sections):
    for section in sections:
        try:
            page.wait_for_selector(
                f"#{section} .body[data-state=ready], #{section} .body[data-state=empty]",
                timeout=20000,
            )
        except PlaywrightTimeout:
            body = page.eval_on_selector(f"#{section}", "(s) => s.outerHTML")
            raise RuntimeError(f"section {section} never got its answer; it shows: {body}")


def wait_idle(page):
    """Every section has its answer: none is waiting for one."""
    page.wait_for_function(
        "document.querySelectorAll('main section[aria-busy=true]').length === 0", timeout=20000
    )


def scrape(page, calls):
    seen = page.evaluate(SCRAPE)
    seen["calls"] = dict(calls)
    return seen


def step(name):
    """Tells the test that the page waits for it, and waits for its answer."""
    print(json.dumps({"step": name}), flush=True)
    sys.stdin.readline()


def open_page(browser, token, sections):
    """A page in a context of its own, on the pinned clock, past the token prompt."""
    context = browser.new_context(
        viewport={"width": 1400, "height": 1000}, timezone_id="America/New_York"
    )
    page = context.new_page()
    page.clock.set_fixed_time(
        datetime.datetime.fromtimestamp(NOW_MS / 1000, tz=datetime.timezone.utc)
    )
    page.goto(URL)
    page.wait_for_selector("#auth:not([hidden])", timeout=20000)
    page.fill("#token", token)
    page.click("#auth button[type=submit]")
    wait_ready(page, sections)
    page.wait_for_selector("#live[data-version]", timeout=20000)
    return page


def issue_state(failure_id, state):
    return (
        f"#failures tr[data-failure-id='{failure_id}'] [data-field=issue][data-state={state}]"
    )


def read_only_view(viewer):
    """What a read-only token sees, and what the service says to its attempt to act."""
    seen = {
        "caller": viewer.inner_text("#caller"),
        "may_write": viewer.get_attribute("#caller", "data-may-write"),
        "table_buttons": viewer.locator("#failures .issue-action").count(),
    }
    failure_id = viewer.locator("#failures tbody tr").first.get_attribute("data-failure-id")
    viewer.locator("#failures tbody tr").first.locator("button.details").click()
    viewer.wait_for_selector("#details .body[data-state=ready]", timeout=20000)
    seen["details_state"] = viewer.inner_text("#details .issue-line")
    seen["details_buttons"] = viewer.locator("#details .issue-action").count()
    viewer.keyboard.press("Escape")
    seen["update"] = viewer.evaluate(
        """async ([token, failureId]) => {
          const r = await fetch('/integration_health.v1.IntegrationHealth/UpdateIssue', {
            method: 'POST',
            headers: {'Content-Type': 'application/json', 'Authorization': 'Bearer ' + token},
            body: JSON.stringify({tenantId: 'acme', failureId, action: 'ACKNOWLEDGE', actor: 'viewer'}),
          });
          return {status: r.status, body: await r.json()};
        }""",
        [VIEWER_TOKEN, failure_id],
    )
    return seen


def act_on_issues(page, second, viewer, report):
    """Acknowledges the first row by mouse and snoozes the second for 4 hours by keyboard, and
    waits for the other open pages to show both without a reload."""
    open_rows = page.locator("#failures tbody tr:has(button[data-action=ACKNOWLEDGE])")
    acknowledged = open_rows.nth(0).get_attribute("data-failure-id")
    snoozed = open_rows.nth(1).get_attribute("data-failure-id")
    report["acknowledged"], report["snoozed"] = acknowledged, snoozed
    with page.expect_response(lambda r: r.url.endswith("UpdateIssue")):
        open_rows.nth(0).locator("button[data-action=ACKNOWLEDGE]").click()
    page.wait_for_selector(issue_state(acknowledged, "ACKNOWLEDGED"), timeout=20000)

    row = page.locator(f"#failures tr[data-failure-id='{snoozed}']")
    row.locator("select.snooze-for").focus()
    row.locator("select.snooze-for").select_option(label="4 hours")
    row.locator("button[data-action=SNOOZE]").focus()
    with page.expect_response(lambda r: r.url.endswith("UpdateIssue")):
        page.keyboard.press("Enter")
    page.wait_for_selector(issue_state(snoozed, "SNOOZED"), timeout=20000)

    seen = {}
    for name, other in [("second", second), ("viewer", viewer)]:
        other.wait_for_selector(issue_state(acknowledged, "ACKNOWLEDGED"), timeout=20000)
        other.wait_for_selector(issue_state(snoozed, "SNOOZED"), timeout=20000)
        seen[name] = {
            failure_id: {
                "state": other.inner_text(
                    f"#failures tr[data-failure-id='{failure_id}'] .issue-state"
                ),
                "acted_at": other.get_attribute(
                    f"#failures tr[data-failure-id='{failure_id}'] [data-field=issue]",
                    "data-acted-at",
                ),
            }
            for failure_id in (acknowledged, snoozed)
        }
        seen[name]["buttons"] = other.locator("#failures .issue-action").count()
    report["followed"] = seen
    report["contrast"] = page.evaluate(CONTRAST, CONTRAST_OF)


def main():
    report = {"requests": [], "console_errors": []}
    calls = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        context = browser.new_context(
            viewport={"width": 1400, "height": 1000}, timezone_id="America/New_York"
        )
        page = context.new_page()
        page.clock.set_fixed_time(
            datetime.datetime.fromtimestamp(NOW_MS / 1000, tz=datetime.timezone.utc)
        )
        page.on("request", lambda r: report["requests"].append(r.url))
        # The refused calls before the right token is given log "Failed to load resource";
        # anything else in the console is a fault of the page.
        page.on(
            "console",
            lambda m: m.type == "error"
            and not m.text.startswith("Failed to load resource")
            and report["console_errors"].append(m.text),
        )
        page.on("pageerror", lambda e: report["console_errors"].append(str(e)))

        def record(request):
            if SERVICE in request.url and request.method == "POST":
                calls[request.url.split(SERVICE)[1]] = request.post_data

        page.on("request", record)

        page.goto(URL)
        page.wait_for_selector("#auth:not([hidden])", timeout=20000)
        report["prompt_without_token"] = page.inner_text("#auth")
        report["blank_without_token"] = page.inner_text("main").strip() == ""

        page.fill("#token", "not-the-token")
        page.click("#auth button[type=submit]")
        page.wait_for_selector("#auth:not([hidden])", timeout=20000)
        page.wait_for_function(
            "document.querySelector('#auth-why').textContent.includes('refused')"
        )
        report["prompt_after_wrong_token"] = page.inner_text("#auth")

        page.fill("#token", TOKEN)
        page.click("#auth button[type=submit]")
        wait_ready(page, SECTIONS)
        page.wait_for_selector("#live[data-version]", timeout=20000)
        report["auth_hidden_after_right_token"] = page.is_hidden("#auth")
        report["before_burst"] = scrape(page, calls)

        # The burst of failures arrives while the page is open: its alert appears live, and
        # every section whose numbers moved follows the feed.
        step("burst")
        page.wait_for_selector(
            "#alerts li[data-state=ALERT_FIRING][data-integration=dash-crm]", timeout=30000
        )
        # Wall-clock seconds: the test knows when it started publishing.
        report["alert_seen_at"] = time.time()
        page.wait_for_selector(f"#live[data-version='{ACME_EVENTS}']", timeout=30000)
        wait_idle(page)
        report["initial"] = scrape(page, calls)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=SCREENSHOT)

        for section, method in [
            ("overview", "GetOverview"),
            ("change", "GetPercentageChange"),
            ("errors", "GetErrorBreakdown"),
        ]:
            with page.expect_response(lambda r, m=method: r.url.endswith(m)):
                page.select_option(f"select.period[data-for={section}]", "7d")
            page.wait_for_selector(f"#{section}[aria-busy=false]")
        report["after_periods"] = scrape(page, calls)

        with page.expect_response(lambda r: r.url.endswith("GetTrends")):
            page.select_option("#trend-granularity", "HOUR")
        page.wait_for_selector("#trends[aria-busy=false]")
        report["hourly"] = scrape(page, calls)

        # The class filter, from its select and from the class's button beside the donut; the
        # button pressed again lists every class.
        with page.expect_response(lambda r: r.url.endswith("ListFailures")):
            page.select_option("#failure-class", "RATE_LIMITED")
        page.wait_for_selector("#failures[aria-busy=false]")
        report["class_selected"] = scrape(page, calls)
        with page.expect_response(lambda r: r.url.endswith("ListFailures")):
            page.click("#overview tr[data-class=AUTH] button")
        page.wait_for_selector("#overview tr[data-class=AUTH] button[aria-pressed=true]")
        page.wait_for_selector("#failures[aria-busy=false]")
        report["class_pressed"] = scrape(page, calls)
        with page.expect_response(lambda r: r.url.endswith("ListFailures")):
            page.click("#overview tr[data-class=AUTH] button")
        page.wait_for_selector("#overview tr[data-class=AUTH] button[aria-pressed=false]")
        page.wait_for_selector("#failures[aria-busy=false]")
        report["class_cleared"] = scrape(page, calls)

        row = page.locator("#failures tbody tr").first
        report["details_for"] = row.get_attribute("data-failure-id")
        row.locator("button.details").focus()
        page.keyboard.press("Enter")
        page.wait_for_selector("#details .body[data-state=ready]", timeout=20000)
        report["details"] = {
            "guidance": page.inner_text("#details .guidance"),
            "facts": page.inner_text("#details .facts"),
            "samples": page.eval_on_selector_all(
                "#details .samples tbody tr td:first-child",
                "(cells) => cells.map((c) => c.textContent)",
            ),
            "request": calls.get("GetFailureDetails"),
            "buttons": page.locator("#details .issue-action").count(),
        }
        page.screenshot(path=SCREENSHOT.replace(".png", "-details.png"))
        page.keyboard.press("Escape")

        # Two more people look at the same tenant: one with the same rights, one read only.
        second = open_page(browser, TOKEN, ["failures"])
        viewer = open_page(browser, VIEWER_TOKEN, ["failures", "alerts", "rules"])
        report["viewer"] = read_only_view(viewer)
        act_on_issues(page, second, viewer, report)
        report["viewer"]["after"] = scrape(viewer, {})

        # Rules that turn the tenant's alerts off, one per kind: WatchAlerts brings each
        # RESOLVED, and the list follows without a reload.
        page.evaluate(
            """(token) => Promise.all(['FAILURE_RATE', 'SPIKE', 'SLO_BURN', 'SILENCE'].map((kind) =>
              fetch('/integration_health.v1.IntegrationHealth/PutAlertRule', {
                method: 'POST',
                headers: {'Content-Type': 'application/json', 'Authorization': 'Bearer ' + token},
                body: JSON.stringify({rule: {scope: {tenantId: 'acme'}, kind, enabled: false}}),
              }).then((r) => r.status)))""",
            TOKEN,
        )
        page.wait_for_selector(
            "#alerts li[data-state=ALERT_FIRING]", state="detached", timeout=30000
        )
        page.wait_for_selector("#alerts li[data-state=ALERT_RESOLVED]", timeout=20000)
        report["after_rule"] = scrape(page, calls)

        with page.expect_response(lambda r: r.url.endswith("GetTrends")):
            page.select_option("#trend-granularity", "DAY")
        page.wait_for_selector("#trends[aria-busy=false]")

        # The long views: a quarter's change and failures, a year of the rest, from day buckets.
        long_views = [
            ("overview", "GetOverview", "1y"),
            ("change", "GetPercentageChange", "90d"),
            ("errors", "GetErrorBreakdown", "1y"),
            ("trends", "GetTrends", "1y"),
            ("integrations", "ListIntegrations", "1y"),
            ("failures", "ListFailures", "90d"),
        ]
        for section, method, value in long_views:
            with page.expect_response(lambda r, m=method: r.url.endswith(m)):
                page.select_option(f"select.period[data-for={section}]", value)
            page.wait_for_selector(f"#{section}[aria-busy=false]")
        report["long"] = scrape(page, calls)
        report["long"]["ranges"] = {
            section: page.inner_text(f"#{section} .range") for section, _, _ in long_views
        }

        # Opened on one integration, as an alert's link opens it.
        page.goto(URL + "&integration=" + FOCUS)
        wait_ready(page, ["integrations", "failures", "rules"])
        page.wait_for_selector("#integrations tr.focus", timeout=20000)
        report["focused"] = scrape(page, calls)
        report["focused"]["note"] = page.inner_text("#focus-note")
        browser.close()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
