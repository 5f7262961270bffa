// End-to-end: authenticator app (TOTP) as the second factor.
// Sign up -> confirm -> sign in -> confirm it's me (password + mailed code) -> enrol TOTP with a code computed from the shown secret ->
// save the backup codes -> sign out -> password + fresh TOTP code -> sign out ->
// password + backup code.
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
  stepUpByEmail,
  button,
  atPath,
  base32Decode,
  freshTotp,
  RESULTS_DIR,
} from './lib.mjs';

const env = useRampart();

test('turn on an authenticator app, then sign in with a TOTP code and with a backup code', { timeout: 240_000 }, async () => {
  await withPage(env, 'failure-totp.png', async ({ context, page, step }) => {
    const email = uniqueEmail('tom');
    const usedSteps = new Set();

    step('sign up and confirm email');
    await signUpAndConfirm(context, page, env.baseUrl, email);

    step('sign in with password');
    await signInWithPassword(page, env.baseUrl, email);
    await page.waitForURL(/\/security/);
    await page.getByRole('heading', { name: 'Security Center' }).first().waitFor();

    step('setting up the app needs a step-up first');
    await page.goto(`${env.baseUrl}/security/factors`);
    await button(page, 'Set up authenticator app').click();
    await page.getByRole('alert').filter({ hasText: 'ask for a code by mail' }).waitFor();

    step('confirm it is me with the password and a mailed code');
    await stepUpByEmail(context, page, env.baseUrl, email);

    step('open the authenticator app set-up');
    await button(page, 'Set up authenticator app').click();
    await page.waitForURL(atPath('/security/totp'));

    step('read the secret and see the QR code');
    const shown = await page.locator('[data-testid=totp-secret]').innerText();
    const secretText = shown.replace(/\s+/g, '');
    assert.match(secretText, /^[A-Z2-7]+=*$/i, `the secret should be base32; got ${JSON.stringify(shown)}`);
    const key = base32Decode(secretText);
    assert.ok(key.length >= 16, `expected a secret of at least 128 bits; got ${key.length * 8}`);
    assert.ok((await page.locator('[data-testid=totp-qr] svg').count()) >= 1, 'expected an inline SVG QR code');

    step('turn on with a code computed from the secret');
    const enrol = await freshTotp(key, usedSteps);
    usedSteps.add(enrol.step);
    await page.locator('input[name=code]').fill(enrol.code);
    await button(page, 'Turn on').click();

    step('save the backup codes');
    const codesLocator = page.locator('[data-testid=backup-code]');
    await codesLocator.first().waitFor();
    const backupCodes = (await codesLocator.allInnerTexts()).map((t) => t.trim());
    assert.equal(backupCodes.length, 10, `expected 10 backup codes; got ${JSON.stringify(backupCodes)}`);
    assert.equal(new Set(backupCodes).size, 10, 'backup codes should all differ');
    assert.ok(backupCodes.every((c) => c.length > 0), `empty backup code: ${JSON.stringify(backupCodes)}`);
    await page.screenshot({ path: join(RESULTS_DIR, 'totp-backup-codes.png'), fullPage: true });

    step('back to the Security Center and sign out');
    await page.getByRole('link', { name: 'Back to Security Center', exact: true }).click();
    await page.waitForURL(atPath('/security'));
    await signOut(page);

    step('sign in with password: a second factor is asked for');
    await signInWithPassword(page, env.baseUrl, email);
    await page.waitForURL(atPath('/signin/second-factor'));

    step('verify with a fresh TOTP code (not the enrolment step)');
    const login = await freshTotp(key, usedSteps);
    usedSteps.add(login.step);
    await page.locator('input[name=code]').fill(login.code);
    await button(page, 'Verify').click();
    await page.waitForURL(atPath('/security'));
    await page.getByRole('heading', { name: 'Security Center' }).first().waitFor();
    await page.screenshot({ path: join(RESULTS_DIR, 'totp.png'), fullPage: true });

    step('sign out, sign in with password and a backup code');
    await signOut(page);
    await signInWithPassword(page, env.baseUrl, email);
    await page.waitForURL(atPath('/signin/second-factor'));
    await page.locator('input[name=code]').fill(backupCodes[0]);
    await button(page, 'Verify').click();
    await page.waitForURL(atPath('/security'));
    await page.getByRole('heading', { name: 'Security Center' }).first().waitFor();
  });
});
