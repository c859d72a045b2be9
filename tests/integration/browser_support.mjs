// What the browser tests (serve_dashboard_test, serve_chat_page_test) share: finding Debian's
// Chromium and playwright-core (or skipping with ctest's code 77), launching Chromium headless with
// a fresh profile and the flags that keep it off the network, and the test log with its checks.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export const SKIP = 77;

export const chromiumPath = process.env.KILN_CHROMIUM ?? "/usr/bin/chromium";

// playwright-core's chromium launcher, or exit 77 when Chromium or the package is missing.
export async function requireChromium() {
  if (!fs.existsSync(chromiumPath)) {
    console.log(`SKIP: no Chromium at ${chromiumPath} (scripts/install-deps.sh --test installs Debian's chromium)`);
    process.exit(SKIP);
  }
  try {
    const { chromium } = await import("playwright-core");
    return chromium;
  } catch (e) {
    console.log(`SKIP: the npm package playwright-core is missing (scripts/install-deps.sh --test installs it): ${e.message}`);
    process.exit(SKIP);
  }
}

// A fresh profile directory for one test run (removed by the caller's cleanup).
export function freshProfileDir(name) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `kiln-${name}-chromium-`));
}

// Headless Chromium on `userDataDir`: no sandbox (CI runs as root), no GPU, and nothing that
// reaches the network by itself (QUIC, component updates, sync, background requests).
export function launchHeadless(chromium, userDataDir, viewport) {
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
    viewport,
  });
}

// The test's log (seconds since start), elapsed() (those seconds as text), a sleep, and check(ok, message), which records a failure
// and goes on so that one run reports every problem.
export function testLog() {
  const t0 = Date.now();
  const failures = [];
  return {
    failures,
    elapsed: () => ((Date.now() - t0) / 1000).toFixed(1),
    log: (m) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`),
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    check(ok, message) {
      if (!ok) {
        failures.push(message);
        console.error(`FAIL: ${message}`);
      }
      return ok;
    },
  };
}
