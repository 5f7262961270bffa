// End-to-end: sign up -> confirm by emailed code -> sign in -> Security Center -> sign out,
// in headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core.
// Server, browser and page steps come from lib.mjs (env: RAMPART_BIN, CHROMIUM_PATH).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  useRampart,
  withPage,
  uniqueEmail,
  signUpAndConfirm,
  signInWithPassword,
  signOut,
  RESULTS_DIR,
} from './lib.mjs';

const env = useRampart();

test('sign up, confirm email, sign in, see Security Center, sign out', { timeout: 180_000 }, async () => {
  await withPage(env, 'failure.png', async ({ context, page, step }) => {
    const email = uniqueEmail('alice');

    step('sign up and confirm email');
    await signUpAndConfirm(context, page, env.baseUrl, email);

    step('sign in');
    await signInWithPassword(page, env.baseUrl, email);
    await page.waitForURL(/\/security/);

    step('Security Center');
    await page.getByRole('heading', { name: 'Security Center' }).first().waitFor();

    await page.getByRole('link', { name: 'Devices', exact: true }).click();
    await page.waitForURL(/\/security\/devices/);
    const devices = await page.locator('[data-testid=device-row]').allInnerTexts();
    assert.ok(devices.length >= 1, 'expected at least one device row');
    assert.ok(
      devices.some((t) => t.includes('This device') && /Chrome/.test(t)),
      `expected a device row with "This device" and Chrome; rows: ${JSON.stringify(devices)}`,
    );

    await page.getByRole('link', { name: 'Sign-in history', exact: true }).click();
    await page.waitForURL(/\/security\/history/);
    const logins = await page.locator('[data-testid=login-row]').allInnerTexts();
    assert.ok(logins.length >= 1, 'expected at least one login row');
    assert.ok(
      logins.some((t) => t.includes('Success')),
      `expected a login row containing "Success"; rows: ${JSON.stringify(logins)}`,
    );

    await page.screenshot({ path: join(RESULTS_DIR, 'security-center.png'), fullPage: true });

    step('sign out');
    await signOut(page);
  });
});
