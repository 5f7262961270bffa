// Shared helpers for the browser tests: start/stop the rampart server, launch Chromium,
// run a test with diagnostics, the sign-up/confirm/sign-in steps, the dev mailbox, and
// RFC 4648 base32 + RFC 6238 TOTP for the authenticator-app tests.
//
// Env:
//   RAMPART_BIN      path to the rampart binary (default ../target/debug/rampart)
//   CHROMIUM_PATH    Chromium executable (default /usr/bin/chromium)
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHmac, randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const RAMPART_BIN = resolve(process.env.RAMPART_BIN || join(here, '..', 'target', 'debug', 'rampart'));
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const RESULTS_DIR = join(here, 'test-results');
export const PASSWORD = 'Tr0ub4dor&3-horse-staple-battery';
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

// ---------------------------------------------------------------------------------------
// Server

/**
 * Start `rampart serve` on a fresh SQLite database in a new temporary directory.
 * Resolves to { baseUrl, output(), stop() } once the server reports its port.
 */
export async function startServer({ toml, args = [] } = {}) {
  const workDir = await mkdtemp(join(tmpdir(), 'rampart-browser-'));
  // Optional settings (e.g. [rules]) for this server: rampart.toml in its working directory.
  if (toml) await writeFile(join(workDir, 'rampart.toml'), toml);
  let output = '';
  const dbUrl = `sqlite://${join(workDir, 'b.db')}`;
  const child = spawn(RAMPART_BIN, ['serve', '--listen', '127.0.0.1:0', '--dev-mailbox', '--database-url', dbUrl, ...args], {
    cwd: workDir,
    env: process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  async function stop() {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      let timer;
      const timeout = new Promise((r) => {
        timer = setTimeout(() => r('timeout'), 5_000);
      });
      const outcome = await Promise.race([exited, timeout]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        child.kill('SIGKILL');
        await exited;
      }
    }
    await rm(workDir, { recursive: true, force: true });
  }

  try {
    const port = await new Promise((resolvePort, reject) => {
      let done = false;
      const finish = (err, p) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolvePort(p);
      };
      const timer = setTimeout(
        () => finish(new Error(`server did not report its port within 60 s; output so far:\n${output}`)),
        60_000,
      );
      const onData = (chunk) => {
        output += chunk.toString();
        const m = output.match(/Rampart listening on 127\.0\.0\.1:(\d+)/);
        if (m) finish(null, Number(m[1]));
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.on('error', (err) => finish(new Error(`could not start ${RAMPART_BIN}: ${err.message}`)));
      child.on('exit', (code, signal) =>
        finish(new Error(`server exited early (code ${code}, signal ${signal}); output:\n${output}`)),
      );
    });
    // Chromium treats localhost as a secure context, so Secure cookies and WebAuthn work over http.
    return { baseUrl: `http://localhost:${port}`, dbUrl, output: () => output, stop };
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}

export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
}

/**
 * Register before/after hooks that start one server and one browser for the test file.
 * Returns an object whose fields are filled in by the `before` hook:
 *   { baseUrl, browser, serverOutput() }
 */
export function useRampart(options = {}) {
  const env = { baseUrl: undefined, dbUrl: undefined, browser: undefined, serverOutput: () => '' };
  let server;
  before(async () => {
    assert.ok(existsSync(RAMPART_BIN), `rampart binary not found at ${RAMPART_BIN} (build it or set RAMPART_BIN)`);
    await mkdir(RESULTS_DIR, { recursive: true });
    server = await startServer(options);
    env.baseUrl = server.baseUrl;
    env.dbUrl = server.dbUrl;
    env.serverOutput = server.output;
    env.browser = await launchBrowser();
  });
  after(async () => {
    if (env.browser) await env.browser.close().catch(() => {});
    if (server) await server.stop();
  });
  return env;
}

// ---------------------------------------------------------------------------------------
// Running a test with useful failure output

/**
 * Open a fresh browser context and page, run `body({ context, page, step })`, and on failure
 * save `test-results/<failureShot>` and add the failed step, URL, page text, browser console
 * messages and the server's output to the error. `step(name)` names the current step.
 */
export async function withPage(env, failureShot, body) {
  const context = await env.browser.newContext();
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  let current = 'start';
  const step = (name) => {
    current = name;
  };
  try {
    await body({ context, page, step });
  } catch (err) {
    await page.screenshot({ path: join(RESULTS_DIR, failureShot), fullPage: true }).catch(() => {});
    const text = await page.locator('body').innerText().catch(() => '<unavailable>');
    err.message =
      `step "${current}" failed at ${page.url()}: ${err.message}\n` +
      `--- page text ---\n${text.slice(0, 2000)}\n` +
      `--- browser console ---\n${consoleLines.slice(-30).join('\n')}\n` +
      `--- server output (tail) ---\n${env.serverOutput().slice(-4000)}`;
    throw err;
  } finally {
    await context.close();
  }
}

// ---------------------------------------------------------------------------------------
// Page steps

/** For page.waitForURL: the URL's path is exactly `path` (any query string). */
export const atPath = (path) => (url) => url.pathname === path;

export const button = (page, name) => page.getByRole('button', { name, exact: true });

export const uniqueEmail = (who = 'alice') => `${who}+${randomBytes(6).toString('hex')}@example.com`;

/** Poll /dev/mailbox until a mail to `email` carrying a confirmation code shows up. */
export function readConfirmationCode(page, baseUrl, email, timeoutMs = 20_000) {
  return readMailedCode(page, baseUrl, email, /confirmation code is (\d{6})/, timeoutMs);
}

/**
 * Poll /dev/mailbox until the newest mail to `email` matching `pattern` (its first group
 * is the code) shows up; returns the code.
 */
export async function readMailedCode(page, baseUrl, email, pattern, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let last = [];
  for (;;) {
    await page.goto(`${baseUrl}/dev/mailbox`);
    last = await page.$$eval('article[data-testid=mail]', (els) =>
      els.map((e) => ({ to: e.getAttribute('data-to'), text: e.innerText })),
    );
    // The mailbox lists newest first.
    const mail = last.find((m) => m.to === email && pattern.test(m.text));
    if (mail) return mail.text.match(pattern)[1];
    if (Date.now() > deadline) {
      throw new Error(
        `no mail matching ${pattern} for ${email} in /dev/mailbox after ${timeoutMs} ms; ` +
          `mails seen: ${JSON.stringify(last.map((m) => m.to))}`,
      );
    }
    await page.waitForTimeout(500);
  }
}

/**
 * On the Security Center of an account without a second factor: "Send me a code", read it
 * from the mailbox (in a second tab), confirm with the password and the code. Sensitive
 * changes (adding the first factor too) are then allowed for 5 minutes.
 */
export async function stepUpByEmail(context, page, baseUrl, email, password = PASSWORD) {
  // The step-up box sits on the pages with sensitive actions; the overview has none.
  if ((await button(page, 'Send me a code').count()) === 0) await page.goto(`${baseUrl}/security/factors`);
  await button(page, 'Send me a code').click();
  await page.waitForURL((url) => url.pathname.startsWith('/security') && url.searchParams.get('saved') === 'step_up_code');
  const mailbox = await context.newPage();
  const code = await readMailedCode(mailbox, baseUrl, email, /confirm a security change is (\d{6})/);
  await mailbox.close();
  const form = page.locator('#step-up-email');
  await form.locator('input[name=password]').fill(password);
  await form.locator('input[name=email_code]').fill(code);
  await form.getByRole('button', { name: "Confirm it's me", exact: true }).click();
  await page.locator('[data-testid=stepped-up]').waitFor();
}

/** The path of the newest link containing `prefix` in a mail to `email` whose text matches `pattern`. */
export async function readLink(page, baseUrl, email, prefix, pattern = /./, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await page.goto(`${baseUrl}/dev/mailbox`);
    const mails = await page.$$eval('article[data-testid=mail]', (els) =>
      els.map((e) => ({ to: e.getAttribute('data-to'), text: e.innerText })),
    );
    const mail = mails.find((m) => m.to === email && m.text.includes(prefix) && pattern.test(m.text));
    if (mail) {
      const escaped = prefix.replace(/[/]/g, '\\/');
      const m = mail.text.match(new RegExp(`(${escaped}[A-Za-z0-9_\\-.~%]+)`));
      assert.ok(m, `no ${prefix} link in ${JSON.stringify(mail.text)}`);
      return { path: m[1], text: mail.text };
    }
    if (Date.now() > deadline) throw new Error(`no mail to ${email} with ${prefix} matching ${pattern}`);
    await page.waitForTimeout(500);
  }
}

/** Sign up with `email` and PASSWORD, read the code from the mailbox (in a second tab), confirm. Ends on /signin. */
export async function signUpAndConfirm(context, page, baseUrl, email) {
  await page.goto(`${baseUrl}/signup`);
  await page.locator('input[name=email]').fill(email);
  await page.locator('input[name=password]').fill(PASSWORD);
  await button(page, 'Create account').click();
  await page.waitForURL(/\/confirm/);

  const mailbox = await context.newPage();
  const code = await readConfirmationCode(mailbox, baseUrl, email);
  assert.match(code, /^\d{6}$/);
  await mailbox.close();

  const confirmEmail = page.locator('input[type=email][name=email]');
  if ((await confirmEmail.count()) > 0 && (await confirmEmail.inputValue()) === '') {
    await confirmEmail.fill(email);
  }
  await page.locator('input[name=code]').fill(code);
  await button(page, 'Confirm email').click();
  await page.waitForURL(/\/signin/);
}

/** Fill the password sign-in form and submit it. The caller waits for where it lands. */
export async function signInWithPassword(page, baseUrl, email, password = PASSWORD) {
  if (new URL(page.url()).pathname !== '/signin') await page.goto(`${baseUrl}/signin`);
  await page.locator('input[name=email]').fill(email);
  await page.locator('input[name=password]').fill(password);
  await button(page, 'Sign in').click();
}

/** Press "Sign out" (on the Security Center) and wait for /signin. */
export async function signOut(page) {
  await button(page, 'Sign out').click();
  await page.waitForURL(/\/signin/);
}

// ---------------------------------------------------------------------------------------
// Base32 (RFC 4648) and TOTP (RFC 6238, HMAC-SHA1)

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** Decode RFC 4648 base32; ignores spaces, hyphens, case and '=' padding. */
export function base32Decode(text) {
  const clean = text.replace(/[\s-]/g, '').replace(/=+$/, '').toUpperCase();
  const out = [];
  let bits = 0;
  let value = 0;
  for (const ch of clean) {
    const v = B32.indexOf(ch);
    if (v < 0) throw new Error(`not a base32 character: ${JSON.stringify(ch)} in ${JSON.stringify(text)}`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
    value &= (1 << bits) - 1; // keep only the bits not yet emitted
  }
  return Buffer.from(out);
}

/** RFC 4226 HOTP with HMAC-SHA1. */
export function hotp(key, counter, digits = 6) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', key).update(msg).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 10 ** digits).padStart(digits, '0');
}

export const TOTP_PERIOD = 30;

/** The RFC 6238 time step for a Unix time in milliseconds. */
export const totpStep = (ms = Date.now()) => Math.floor(ms / 1000 / TOTP_PERIOD);

/** RFC 6238 TOTP (HMAC-SHA1, 30 s steps) for a Unix time in seconds. */
export function totp(key, unixSeconds = Date.now() / 1000, digits = 6) {
  return hotp(key, Math.floor(unixSeconds / TOTP_PERIOD), digits);
}

/**
 * A code for the current step that is safe to submit: waits for the next step when fewer
 * than `marginMs` remain in this one, or when this step is in `usedSteps` (servers refuse a
 * code replayed within its window). Returns { code, step }.
 */
export async function freshTotp(key, usedSteps = new Set(), marginMs = 3_000) {
  for (;;) {
    const now = Date.now();
    const step = totpStep(now);
    const left = (step + 1) * TOTP_PERIOD * 1000 - now;
    if (left >= marginMs && !usedSteps.has(step)) return { code: hotp(key, step), step };
    await new Promise((r) => setTimeout(r, left + 250));
  }
}
