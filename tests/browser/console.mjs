// End-to-end test of the web console in the system's headless Chromium (Playwright's
// playwright-core driving /usr/bin/chromium; no browser download), with axe-core on every page.
// Run by crates/juris/tests/console_browser.rs, which starts `juris serve` and passes:
//   JURIS_UI       http://ADDR:PORT of the admin listener
//   ADMIN_TOKEN    an admin token;  VIEWER_TOKEN  a viewer token
//   ITALY          a client address the test's GeoIP database places in Italy
//   DNS            ADDR:PORT of juris's DNS listener (real queries from ITALY are counted)
//   CHROMIUM       the browser (default /usr/bin/chromium)
//   SCREENSHOTS    a directory to save screenshots of the main pages in (optional)
// Exits non-zero with the reason on the first failure.
import { createHash } from "node:crypto";
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const base = process.env.JURIS_UI;
const shots = process.env.SCREENSHOTS || "";
const ORDER = "IT-MI-2024-0001";

function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

// One DNS query (A, RD) for `name` from the Italian client address; resolves with the RCODE of
// the answer, or null when `wait` is false (fire and forget: a shadow match is counted before
// any resolution, which this test's juris cannot do).
function dnsQuery(name, wait) {
  const [host, port] = [process.env.DNS.replace(/:\d+$/, ""), Number(process.env.DNS.split(":").pop())];
  const labels = name.split(".").flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
  const packet = Buffer.concat([
    Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]),
    ...labels,
    Buffer.from([0, 0, 1, 0, 1]),
  ]);
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4");
    socket.on("error", reject);
    socket.bind({ address: process.env.ITALY, port: 0 }, () => {
      socket.send(packet, port, host, (error) => {
        if (error) return reject(error);
        if (!wait) {
          socket.close();
          resolve(null);
        }
      });
    });
    if (wait) {
      socket.on("message", (reply) => {
        socket.close();
        resolve(reply[3] & 0x0f);
      });
    }
  });
}

// Reloads `path` until `test(page)` holds (the per-day counters are flushed to the store every
// second in this test); bounded, no timing asserted.
async function until(page, path, test, what, before) {
  for (let i = 0; i < 100; i++) {
    if (before) await before();
    await page.goto(`${base}${path}`);
    if (await test(page)) return;
    await page.waitForTimeout(300);
  }
  throw new Error(`never saw ${what} on ${path}`);
}

const cspViolations = [];

async function newPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  return page;
}

// axe-core: no serious or critical violation. Evaluated through the DevTools protocol, which
// the page's CSP does not govern (an injected <script> would be refused, as it should be).
async function accessible(page, what) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { resultTypes: ["violations"] }),
  );
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(
    bad.length === 0,
    `${what}: accessibility violations: ` +
      JSON.stringify(bad.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target) }))),
  );
}

async function shot(page, name) {
  if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

async function signIn(page, token) {
  await page.goto(`${base}/ui/`);
  check(page.url().endsWith("/ui/login"), `not sent to the sign-in form: ${page.url()}`);
  await accessible(page, "sign-in");
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${base}/ui/`);
}

async function heading(page) {
  return (await page.locator("h1").textContent()).trim();
}

// Submits a hand-made form (as a forged cross-site form would be) and returns the page title.
async function forgedPost(page, action, fields) {
  await Promise.all([
    page.waitForNavigation(),
    page.evaluate(
      ([action, fields]) => {
        const form = document.createElement("form");
        form.method = "post";
        form.action = action;
        for (const [name, value] of Object.entries(fields)) {
          const input = document.createElement("input");
          input.type = "hidden";
          input.name = name;
          input.value = value;
          form.appendChild(input);
        }
        document.body.appendChild(form);
        form.submit();
      },
      [action, fields],
    ),
  ]);
  return heading(page);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  // ---- admin: sign in; the empty state tells what to do first ----
  const admin = await newPage(browser);
  await signIn(admin, process.env.ADMIN_TOKEN);
  check((await heading(admin)) === "Dashboard", "no dashboard after sign-in");
  check(await admin.getByText("no orders yet").isVisible(), "no empty state on a new store");
  await accessible(admin, "dashboard (empty)");
  await shot(admin, "dashboard-empty");

  // ---- create the Milan order: one field wrong first ----
  await admin.getByRole("link", { name: "Orders", exact: true }).click();
  await accessible(admin, "orders (empty)");
  await admin.getByRole("link", { name: "Create an order" }).click();
  await admin.getByLabel("Order id").fill(ORDER);
  await admin.getByLabel("Kind").selectOption("court_order");
  await admin.getByLabel("Issuing authority").fill("Tribunale di Milano");
  await admin.getByLabel("Case reference").fill("RG 12345/2024");
  await admin.getByLabel("Legal basis").fill("L. 633/1941; L. 93/2023");
  await admin.getByLabel("Jurisdictions").fill("ITALY");
  await admin.getByLabel("Answer for a blocked name").selectOption("nxdomain");
  await admin.getByLabel("Comply by (UTC)").fill("2030-05-31T00:00:00Z");
  await admin.getByLabel("Notice URL").fill("https://lumendatabase.org/notices/0");
  await admin.getByLabel("Targets, one per line").fill("subtree kickasstorrents.to\ndomain limetorrents.pro");
  await admin.getByRole("button", { name: /Create the order/ }).click();
  const error = admin.locator("#jurisdictions-error");
  check(await error.isVisible(), "no error next to the jurisdictions field");
  check(
    (await admin.getByLabel("Jurisdictions").getAttribute("aria-invalid")) === "true",
    "the wrong field is not marked invalid",
  );
  await accessible(admin, "order form with an error");
  await shot(admin, "order-form-error");
  await admin.getByLabel("Jurisdictions").fill("IT");
  await admin.getByRole("button", { name: /Create the order/ }).click();
  await admin.waitForURL(`${base}/ui/orders/${ORDER}`);
  check((await heading(admin)) === `Order ${ORDER}`, "not on the order's page after creating it");

  // ---- a viewer sees no Activate button, and the server refuses it anyway ----
  const viewer = await newPage(browser);
  await signIn(viewer, process.env.VIEWER_TOKEN);
  await viewer.goto(`${base}/ui/orders/${ORDER}`);
  check((await viewer.getByRole("button", { name: "Activate" }).count()) === 0, "a viewer sees Activate");
  const csrf = await viewer.locator("input[name=csrf]").first().inputValue();
  const refused = await forgedPost(viewer, `/ui/orders/${ORDER}/state`, { csrf, to: "active" });
  check(refused === "Not allowed", `a viewer's activation was not refused: ${refused}`);

  // ---- a form post without the CSRF token is refused ----
  await admin.goto(`${base}/ui/orders/${ORDER}`);
  const noCsrf = await forgedPost(admin, `/ui/orders/${ORDER}/state`, { to: "active" });
  check(noCsrf === "Not allowed", `a post without the CSRF token was not refused: ${noCsrf}`);
  await admin.goto(`${base}/ui/orders/${ORDER}`);
  check((await admin.locator(".badge").first().textContent()) === "draft", "the refused posts changed the order");

  // ---- shadow first: the impact of real queries from Italy shows next to Activate ----
  await admin.getByRole("button", { name: "Shadow (count only)" }).click();
  await admin.waitForURL(`${base}/ui/orders/${ORDER}`);
  check((await admin.locator(".badge").first().textContent()) === "shadow", "not in shadow after Shadow");
  await until(
    admin,
    `/ui/orders/${ORDER}`,
    async (p) => /would have blocked [1-9]\d* answer/.test(await p.locator("#impact + p").textContent()),
    "the shadow-mode impact of a query from Italy",
    () => dnsQuery("www.kickasstorrents.to", false),
  );
  await accessible(admin, "order page in shadow mode");
  await shot(admin, "order-shadow");

  // ---- activate ----
  await admin.getByLabel("Reason (recorded in the audit log)").fill("order received by PEC");
  await admin.getByRole("button", { name: "Activate" }).click();
  await admin.waitForURL(`${base}/ui/orders/${ORDER}`);
  check((await admin.locator(".badge").first().textContent()) === "active", "not active after Activate");

  // ---- explain: a client in Italy is blocked (once the resolver has published it) ----
  let verdict = "";
  for (let i = 0; i < 150 && verdict !== "block"; i++) {
    await admin.goto(`${base}/ui/explain`);
    await admin.getByLabel("Name", { exact: true }).fill("www.kickasstorrents.to");
    await admin.getByLabel("Client address").fill(process.env.ITALY);
    await admin.getByRole("button", { name: "Explain" }).click();
    verdict = (await admin.locator("#verdict span").textContent()).trim();
    if (verdict !== "block") await admin.waitForTimeout(200);
  }
  check(verdict === "block", `an Italian client is not blocked: ${verdict}`);
  const answer = await admin.locator("dd code").first().textContent();
  check(answer === "NXDOMAIN", `the exact answer is ${answer}`);
  check(await admin.getByText("Extended DNS Error 16").isVisible(), "no EDE 16 in the explanation");
  await accessible(admin, "explain");
  await shot(admin, "explain");

  // ---- a real query from Italy is blocked, counted, and charted per day and jurisdiction ----
  const rcode = await dnsQuery("www.kickasstorrents.to", true);
  check(rcode === 3, `a query from Italy got RCODE ${rcode}, not NXDOMAIN`);
  await until(
    admin,
    `/ui/orders/${ORDER}`,
    async (p) => (await p.locator("figcaption", { hasText: /^IT: [1-9]/ }).count()) === 1,
    "the blocked answer in Italy's per-day chart",
  );
  check(
    (await admin.getByRole("img", { name: /Blocked answers in IT per day from/ }).count()) === 1,
    "the chart has no accessible name",
  );

  // ---- add a future domain with evidence ----
  await admin.goto(`${base}/ui/orders/${ORDER}`);
  await admin.getByLabel("Name or address").fill("kickasstorrents.cr");
  await admin.getByLabel("Evidence").fill("AGCOM report 2024/7");
  await admin.getByRole("button", { name: "Add the target" }).click();
  check(await admin.getByText("Added: kickasstorrents.cr").isVisible(), "the future domain was not added");
  check(await admin.getByRole("cell", { name: "AGCOM report 2024/7" }).isVisible(), "no evidence shown");
  await accessible(admin, "order page");
  await shot(admin, "order");

  // ---- the public transparency page lists it (no sign-in) ----
  // (rebuilt in the background after each change: reloaded until the new copy is served)
  const anonymous = await newPage(browser);
  await until(
    anonymous,
    "/transparency",
    async (p) => (await p.content()).includes("kickasstorrents.cr"),
    "the future domain",
  );
  check(await anonymous.getByRole("link", { name: ORDER }).isVisible(), "the order is not on /transparency");
  check((await anonymous.content()).includes("kickasstorrents.cr"), "the future domain is not published");
  await accessible(anonymous, "transparency");
  await shot(anonymous, "transparency");
  const json = await (await anonymous.request.get(`${base}/transparency.json`)).json();
  check(json.jurisdictions.IT.some((o) => o.order_id === ORDER), "the order is not in /transparency.json");

  // ---- a feed (Piracy Shield style) imported through the API, then its console pages ----
  const api = (path, body) =>
    anonymous.request.post(`${base}${path}`, {
      headers: { Authorization: `Bearer ${process.env.ADMIN_TOKEN}`, "Content-Type": "application/json" },
      data: body,
    });
  const created = await api("/v1/orders", {
    id: "PS-IT-2024",
    kind: "feed_ticket",
    authority: "AGCOM (Piracy Shield)",
    jurisdictions: ["IT"],
    action: "nxdomain",
    targets: [],
  });
  check(created.status() === 201, `the feed's order was not created: ${created.status()}`);
  const sha = (items) => createHash("sha256").update(items.join("\n")).digest("hex");
  const fqdn = ["streaming-pirata.example", "calcio-live.example", "co.uk"];
  const imported = await api("/v1/feeds/piracy-shield?order=PS-IT-2024", {
    fqdn,
    ipv4: ["192.0.2.10"],
    ipv6: [],
    sha256: { fqdn: sha(fqdn), ipv4: sha(["192.0.2.10"]), ipv6: sha([]) },
  });
  check(imported.ok(), `the feed was not imported: ${imported.status()}`);
  await admin.goto(`${base}/ui/feeds`);
  check(await admin.getByText(sha(fqdn)).isVisible(), "the feed's SHA-256 is not shown");
  await accessible(admin, "feeds");
  await shot(admin, "feeds");
  await admin.getByRole("link", { name: "piracy-shield" }).click();
  check(await admin.getByRole("cell", { name: "UNDEFINED" }).isVisible(), "co.uk is not acknowledged as UNDEFINED");
  await accessible(admin, "feed acknowledgement");
  await shot(admin, "feed");

  // ---- the other pages: dashboard, orders, audit, tokens, safeguards ----
  for (const [path, name] of [
    ["/ui/", "dashboard"],
    ["/ui/orders", "orders"],
    ["/ui/audit", "audit"],
    ["/ui/tokens", "tokens"],
    ["/ui/safeguards", "safeguards"],
  ]) {
    await admin.goto(`${base}${path}`);
    await accessible(admin, name);
    await shot(admin, name);
  }
  await admin.goto(`${base}/ui/audit`);
  check(await admin.getByText(/Chain verified/).isVisible(), "the audit chain is not shown verified");

  // ---- lift, then sign out ----
  await admin.goto(`${base}/ui/orders/${ORDER}`);
  await admin.getByRole("button", { name: "Lift" }).click();
  await admin.waitForURL(`${base}/ui/orders/${ORDER}`);
  check((await admin.locator(".badge").first().textContent()) === "lifted", "not lifted");
  await until(
    anonymous,
    "/transparency",
    async (p) => (await p.getByRole("link", { name: ORDER }).count()) === 0,
    "the lifted order taken off",
  );
  await admin.getByRole("button", { name: "Sign out" }).click();
  await admin.waitForURL(`${base}/ui/login`);
  await admin.goto(`${base}/ui/`);
  check(admin.url().endsWith("/ui/login"), "still signed in after signing out");

  // ---- narrow and dark: readable at 320 px, no horizontal scroll of the page ----
  const narrow = await browser.newContext({ viewport: { width: 320, height: 800 }, colorScheme: "dark" });
  const small = await narrow.newPage();
  await signIn(small, process.env.ADMIN_TOKEN);
  await small.goto(`${base}/ui/orders/${ORDER}`);
  const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the order page scrolls sideways at 320 px by ${overflow} px`);
  await accessible(small, "order page, 320 px, dark");
  await shot(small, "order-320-dark");

  check(cspViolations.length === 0, `CSP violations: ${cspViolations.join("; ")}`);
  console.log("console browser test: ok");
} finally {
  await browser.close();
}
