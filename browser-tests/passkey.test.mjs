// End-to-end: a real WebAuthn ceremony through Chromium's virtual authenticator.
// Sign up -> confirm -> sign in with password -> add a passkey on the Security Center
// (after confirming it's me with the password and a mailed code: a stolen session cookie
// alone cannot add one) -> sign out -> sign in with the passkey alone -> forgot password:
// the reset link is completed with the passkey as the second factor.
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
  readMailedCode,
  button,
  stepUpByEmail,
  atPath,
  RESULTS_DIR,
} from './lib.mjs';

const env = useRampart();

test('add a passkey, sign out, sign in with the passkey', { timeout: 180_000 }, async () => {
  await withPage(env, 'failure-passkey.png', async ({ context, page, step }) => {
    const email = uniqueEmail('pia');

    step('sign up and confirm email');
    await signUpAndConfirm(context, page, env.baseUrl, email);

    step('sign in with password');
    await signInWithPassword(page, env.baseUrl, email);
    await page.waitForURL(/\/security/);
    await page.getByRole('heading', { name: 'Security Center' }).first().waitFor();

    step('attach a virtual authenticator');
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });

    step('adding a passkey needs a step-up first');
    await page.goto(`${env.baseUrl}/security/factors`);
    await page.locator('#passkey-name').fill('Test key');
    await page.locator('#add-passkey').click();
    await page.locator('#passkey-status', { hasText: "Confirm it's you first" }).waitFor();

    step('confirm it is me with the password and a mailed code');
    await stepUpByEmail(context, page, env.baseUrl, email);

    step('add a passkey');
    await page.locator('#passkey-name').fill('Test key');
    await page.locator('#add-passkey').click();
    // passkeys.js reloads the page once the server has stored the passkey; errors land in #passkey-status.
    await page.locator('[data-testid=passkey-row]', { hasText: 'Test key' }).first().waitFor();

    step('the authenticator holds one resident credential for localhost');
    let signCountAfterAdd;
    {
      const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
      assert.equal(credentials.length, 1, `expected one credential; got ${JSON.stringify(credentials)}`);
      assert.equal(credentials[0].isResidentCredential, true, 'the passkey must be discoverable (resident)');
      assert.equal(credentials[0].rpId, 'localhost');
      assert.ok(credentials[0].userHandle, 'a resident credential carries the user handle');
      signCountAfterAdd = credentials[0].signCount;
    }

    step('sign out');
    await signOut(page);

    step('sign in with the passkey');
    await page.locator('#passkey-signin').click();
    await page.waitForURL(atPath('/security'));
    await page.getByRole('heading', { name: 'Security Center' }).first().waitFor();

    step('login history records the passkey sign-in');
    await page.goto(`${env.baseUrl}/security/history`);
    const firstLogin = await page.locator('[data-testid=login-row]').first().innerText();
    assert.match(firstLogin, /Passkey/, `expected the newest login row to mention Passkey; got ${JSON.stringify(firstLogin)}`);

    step('the sign-in was signed by that same credential');
    {
      const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
      assert.equal(credentials.length, 1, `expected still one credential; got ${JSON.stringify(credentials)}`);
      assert.ok(
        credentials[0].signCount > signCountAfterAdd,
        `expected the sign count to grow past ${signCountAfterAdd}; got ${credentials[0].signCount}`,
      );
    }

    await page.screenshot({ path: join(RESULTS_DIR, 'passkey.png'), fullPage: true });

    step('forgot password: the reset of a passkey account is proved with the passkey');
    await signOut(page);
    await page.getByRole('link', { name: 'Forgot your password?' }).click();
    await page.locator('input[name=email]').fill(email);
    await button(page, 'Mail me a link').click();
    await page.getByText('a link to choose a new password is on its way').waitFor();
    const mailbox = await context.newPage();
    const resetPath = await readMailedCode(mailbox, env.baseUrl, email, /(\/reset-password\/[A-Za-z0-9_-]+)/);
    await mailbox.close();
    await page.goto(`${env.baseUrl}${resetPath}`);
    await page.locator('input[name=new_password]').fill('Velvet-orbit-canyon-91-drums');
    await page.locator('#passkey-reset').click();
    await page.waitForURL(/\/signin\?notice=password_reset/);
    await page.getByText('Your password was reset').first().waitFor();
  });
});
