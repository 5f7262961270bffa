// The victim's journey on the demo account (`serve --demo`): the overview marks the 03:12
// Lagos sign-in as unusual → Secure my account → the backdoor sweep removes the attacker's
// API key and allowlist address → the incident report is downloaded and read → a ticket is
// filed. Every Security Center page is checked at 1280 and 360 px wide for horizontal
// overflow (screenshots in test-results/) and with axe-core for serious accessibility
// violations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import {
  useRampart,
  withPage,
  signInWithPassword,
  stepUpByEmail,
  button,
  readLink,
  RESULTS_DIR,
} from './lib.mjs';

const env = useRampart({ args: ['--demo'] });
const DEMO_EMAIL = 'demo@rampart.example';
const DEMO_PASSWORD = 'Harbor-lantern-quietly-47';
const AXE_SOURCE = readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const PAGES = ['/security', '/security/devices', '/security/history', '/security/keys', '/security/withdrawals', '/security/factors', '/security/notifications', '/security/incident'];

/** axe-core on the current page: the serious and critical violations, as text. */
async function axeViolations(page) {
  await page.addScriptTag({ content: await AXE_SOURCE });
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
  });
  return result;
}

/** How far the page is wider than the window (0 when nothing scrolls sideways). */
const overflow = (page) => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);

test('the demo victim secures the account, sweeps the backdoors, downloads the report and files a ticket', { timeout: 300_000 }, async () => {
  // bypassCSP lets the test inject axe-core; the pages themselves keep their strict CSP.
  const ctxOptions = { bypassCSP: true, acceptDownloads: true, viewport: { width: 1280, height: 900 } };
  const envWithOptions = { ...env, browser: { newContext: () => env.browser.newContext(ctxOptions) } };
  await withPage(envWithOptions, 'failure-victim.png', async ({ context, page, step }) => {
    step('sign in to the demo account and confirm this new browser from the mailed link');
    await signInWithPassword(page, env.baseUrl, DEMO_EMAIL, DEMO_PASSWORD);
    await page.waitForURL(/\/signin\/check-mail/);
    const confirm = await readLink(page, env.baseUrl, DEMO_EMAIL, '/confirm-device/');
    await page.goto(`${env.baseUrl}${confirm.path}`);
    await button(page, 'Yes, it was me').click();
    await page.waitForLoadState();
    await page.goto(`${env.baseUrl}/security`);
    await page.getByRole('heading', { name: 'Security Center' }).first().waitFor();

    step('every page: no sideways scrolling at 1280 and 360 px, no serious axe violations');
    for (const width of [1280, 360]) {
      await page.setViewportSize({ width, height: 900 });
      for (const path of PAGES) {
        await page.goto(`${env.baseUrl}${path}`);
        const name = path.replace(/\//g, '_').replace(/^_/, '') || 'overview';
        await page.screenshot({ path: join(RESULTS_DIR, `${name}-${width}.png`), fullPage: true });
        assert.ok((await overflow(page)) <= 0, `${path} scrolls sideways at ${width} px by ${await overflow(page)} px`);
        if (width === 1280) {
          const violations = await axeViolations(page);
          assert.deepEqual(violations, [], `${path}: ${violations.join('\n')}`);
        }
      }
    }
    await page.setViewportSize({ width: 1280, height: 900 });

    step('overview: the Lagos sign-in is marked unusual, with why');
    await page.goto(`${env.baseUrl}/security`);
    const lagos = page.locator('[data-testid=recent].unusual', { hasText: 'Lagos' }).filter({ hasText: 'Sign-in: Success' }).first();
    await lagos.waitFor();
    assert.match(await lagos.innerText(), /country you had not signed in from before|device first seen/);
    const checklist = page.getByTestId('checklist');
    assert.match(await checklist.innerText(), /To do:\s*Secure your account/);

    step('Secure my account: each step and its result');
    await page.getByTestId('secure').click();
    await page.getByTestId('secured').waitFor();
    const steps = await page.getByTestId('secure-step').allInnerTexts();
    assert.equal(steps.length, 5, JSON.stringify(steps));
    assert.match(steps.join('\n'), /Suspended 1 API key/);
    assert.match(steps.join('\n'), /Cancelled 1 held withdrawal/);

    step('sweep since the Lagos sign-in: the attacker key and address, with the device and place');
    const since = page.locator('select[name=since]');
    const lagosOption = await since.locator('option', { hasText: 'Lagos' }).first().getAttribute('value');
    await since.selectOption(lagosOption);
    await button(page, 'Show').click();
    const items = page.getByTestId('sweep-item');
    await items.first().waitFor();
    const texts = (await items.allInnerTexts()).join('\n');
    assert.match(texts, /API key "sync"/);
    assert.match(texts, /0x9A3f5c1E7b2D4a6C8e0F1b3D5f7A9c2E4b6D8f0A/);
    assert.match(texts, /Windows/);
    assert.match(texts, /Lagos/);

    step('remove them all (a step-up first)');
    await stepUpByEmail(context, page, env.baseUrl, DEMO_EMAIL, DEMO_PASSWORD);
    assert.equal(new URL(page.url()).pathname, '/security/incident', 'the step-up returns to the incident page');
    await page.goto(`${env.baseUrl}/security/incident?since=${lagosOption}`);
    await page.getByTestId('sweep-all').click();
    await page.getByTestId('notice').filter({ hasText: /Removed \d+ item/ }).waitFor();
    await page.getByTestId('sweep-empty').waitFor();
    await page.goto(`${env.baseUrl}/security/keys`);
    assert.equal(await page.getByTestId('key-row').count(), 0, 'the attacker key is gone');

    step('download the report (PDF and JSON) and read it');
    await page.goto(`${env.baseUrl}/security/incident`);
    const [pdf] = await Promise.all([page.waitForEvent('download'), page.getByTestId('report-pdf').click()]);
    const pdfBytes = await readFile(await pdf.path());
    assert.equal(pdfBytes.subarray(0, 5).toString(), '%PDF-');
    const [json] = await Promise.all([page.waitForEvent('download'), page.getByTestId('report-json').click()]);
    const report = JSON.parse(await readFile(await json.path(), 'utf8'));
    assert.equal(report.audit_chain_intact, true);
    assert.ok(report.timeline.some((e) => /API key .* created/.test(e.what)), 'the key creation is in the timeline');
    assert.ok(report.sign_ins.some((s) => s.place.includes('Lagos')), 'the Lagos sign-in is in the report');

    step('file a ticket');
    await page.goto(`${env.baseUrl}/support`);
    await page.locator('textarea[name=description]').fill('Someone signed in from Lagos at 03:12 and created an API key. I secured the account and removed it.');
    await button(page, 'File the ticket').click();
    await page.getByText('Your ticket was filed.').waitFor();

    step('overview: the checklist ticked itself');
    await page.goto(`${env.baseUrl}/security`);
    const ticked = await page.getByTestId('check-item').allInnerTexts();
    assert.match(ticked.join('\n'), /Done:\s*Secure your account/);
    assert.match(ticked.join('\n'), /Done:\s*Delete API keys/);
    assert.match(ticked.join('\n'), /Done:\s*File a support ticket/);
    await page.screenshot({ path: join(RESULTS_DIR, 'victim-done.png'), fullPage: true });
  });
});
