// End-to-end: sign up -> confirm by emailed code -> sign in -> Security Center -> sign out,
// in headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core.
//
// Env:
//   RAMPART_BIN      path to the rampart binary (default ../target/debug/rampart)
//   CHROMIUM_PATH    Chromium executable (default /usr/bin/chromium)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const RAMPART_BIN = resolve(process.env.RAMPART_BIN || join(here, '..', 'target', 'debug', 'rampart'));
const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const RESULTS_DIR = join(here, 'test-results');
const PASSWORD = 'Tr0ub4dor&3-horse-staple-battery';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let server; // ChildProcess
let serverOutput = '';
let workDir;
let baseUrl;
let browser;

function startServer() {
  return new Promise((resolvePort, reject) => {
    const dbUrl = `sqlite://${join(workDir, 'b.db')}`;
    server = spawn(RAMPART_BIN, ['serve', '--listen', '127.0.0.1:0', '--database-url', dbUrl], {
      cwd: workDir,
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let done = false;
    const finish = (err, port) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolvePort(port);
    };
    const timer = setTimeout(
      () => finish(new Error(`server did not report its port within 60 s; output so far:\n${serverOutput}`)),
      60_000,
    );
    const onData = (chunk) => {
      serverOutput += chunk.toString();
      const m = serverOutput.match(/Rampart listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) finish(null, Number(m[1]));
    };
    server.stdout.on('data', onData);
    server.stderr.on('data', onData);
    server.on('error', (err) => finish(new Error(`could not start ${RAMPART_BIN}: ${err.message}`)));
    server.on('exit', (code, signal) =>
      finish(new Error(`server exited early (code ${code}, signal ${signal}); output:\n${serverOutput}`)),
    );
  });
}

async function stopServer() {
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  let timer;
  const timeout = new Promise((r) => {
    timer = setTimeout(() => r('timeout'), 5_000);
  });
  const outcome = await Promise.race([exited, timeout]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    server.kill('SIGKILL');
    await exited;
  }
}

before(async () => {
  assert.ok(existsSync(RAMPART_BIN), `rampart binary not found at ${RAMPART_BIN} (build it or set RAMPART_BIN)`);
  workDir = await mkdtemp(join(tmpdir(), 'rampart-browser-'));
  await mkdir(RESULTS_DIR, { recursive: true });
  const port = await startServer();
  // Chromium treats localhost as a secure context, so Secure cookies work over http.
  baseUrl = `http://localhost:${port}`;
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  await stopServer();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

/** Poll /dev/mailbox until a mail to `email` carrying a confirmation code shows up. */
async function readConfirmationCode(page, email, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let last = [];
  for (;;) {
    await page.goto(`${baseUrl}/dev/mailbox`);
    last = await page.$$eval('article[data-testid=mail]', (els) =>
      els.map((e) => ({ to: e.getAttribute('data-to'), text: e.innerText })),
    );
    // The mailbox lists newest first; with a unique address there is normally exactly one.
    const mail = last.find((m) => m.to === email && /confirmation code is \d{6}/.test(m.text));
    if (mail) return mail.text.match(/confirmation code is (\d{6})/)[1];
    if (Date.now() > deadline) {
      throw new Error(
        `no confirmation mail for ${email} in /dev/mailbox after ${timeoutMs} ms; ` +
          `mails seen: ${JSON.stringify(last.map((m) => m.to))}`,
      );
    }
    await page.waitForTimeout(500);
  }
}

const button = (page, name) => page.getByRole('button', { name, exact: true });

test('sign up, confirm email, sign in, see Security Center, sign out', { timeout: 180_000 }, async () => {
  const context = await browser.newContext();
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  const email = `alice+${randomBytes(6).toString('hex')}@example.com`;
  let step = 'start';
  try {
    step = 'sign up';
    await page.goto(`${baseUrl}/signup`);
    await page.locator('input[name=email]').fill(email);
    await page.locator('input[name=password]').fill(PASSWORD);
    await button(page, 'Create account').click();
    await page.waitForURL(/\/confirm/);

    step = 'read confirmation code from /dev/mailbox';
    const mailbox = await context.newPage();
    const code = await readConfirmationCode(mailbox, email);
    assert.match(code, /^\d{6}$/);
    await mailbox.close();

    step = 'confirm email';
    const confirmEmail = page.locator('input[type=email][name=email]');
    if ((await confirmEmail.count()) > 0 && (await confirmEmail.inputValue()) === '') {
      await confirmEmail.fill(email);
    }
    await page.locator('input[name=code]').fill(code);
    await button(page, 'Confirm email').click();
    await page.waitForURL(/\/signin/);

    step = 'sign in';
    await page.locator('input[name=email]').fill(email);
    await page.locator('input[name=password]').fill(PASSWORD);
    await button(page, 'Sign in').click();
    await page.waitForURL(/\/security/);

    step = 'Security Center';
    await page.getByRole('heading', { name: 'Security Center' }).first().waitFor();

    const devices = await page.locator('[data-testid=device-row]').allInnerTexts();
    assert.ok(devices.length >= 1, 'expected at least one device row');
    assert.ok(
      devices.some((t) => t.includes('This device') && /Chrome/.test(t)),
      `expected a device row with "This device" and Chrome; rows: ${JSON.stringify(devices)}`,
    );

    const logins = await page.locator('[data-testid=login-row]').allInnerTexts();
    assert.ok(logins.length >= 1, 'expected at least one login row');
    assert.ok(
      logins.some((t) => t.includes('Success')),
      `expected a login row containing "Success"; rows: ${JSON.stringify(logins)}`,
    );

    await page.screenshot({ path: join(RESULTS_DIR, 'security-center.png'), fullPage: true });

    step = 'sign out';
    await button(page, 'Sign out').click();
    await page.waitForURL(/\/signin/);
  } catch (err) {
    await page.screenshot({ path: join(RESULTS_DIR, 'failure.png'), fullPage: true }).catch(() => {});
    const body = await page.locator('body').innerText().catch(() => '<unavailable>');
    err.message =
      `step "${step}" failed at ${page.url()}: ${err.message}\n` +
      `--- page text ---\n${body.slice(0, 2000)}\n--- server output (tail) ---\n${serverOutput.slice(-4000)}`;
    throw err;
  } finally {
    await context.close();
  }
});
