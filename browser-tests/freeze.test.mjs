// End-to-end: the "Not you? Freeze your account" link carried by every account mail.
// Context A signs up and signs in; context B (no cookies) reads the sign-in notification
// in /dev/mailbox, opens the freeze link (opening alone must not freeze), presses the
// button, and the account is frozen: A's session ends, a new password sign-in is refused,
// and the link does not work a second time.
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
  button,
  RESULTS_DIR,
} from './lib.mjs';

const env = useRampart();

/** Poll /dev/mailbox until the newest mail to `email` with a /freeze/ link shows up; return the link's path. */
async function readFreezePath(page, baseUrl, email, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let last = [];
  for (;;) {
    await page.goto(`${baseUrl}/dev/mailbox`);
    last = await page.$$eval('article[data-testid=mail]', (els) =>
      els.map((e) => ({ to: e.getAttribute('data-to'), text: e.innerText })),
    );
    // Newest first: the first match is the sign-in notification.
    const mail = last.find((m) => m.to === email && /\/freeze\//.test(m.text));
    if (mail) {
      const line = mail.text.split('\n').find((l) => l.includes('/freeze/'));
      // The mail's host is the configured public_url, not this test server: keep only the path.
      const m = line.match(/(\/freeze\/[A-Za-z0-9_\-.~%]+)/);
      assert.ok(m, `could not parse a freeze path from ${JSON.stringify(line)}`);
      return { path: m[1], mailText: mail.text };
    }
    if (Date.now() > deadline) {
      throw new Error(
        `no mail with a /freeze/ link for ${email} in /dev/mailbox after ${timeoutMs} ms; ` +
          `mails seen: ${JSON.stringify(last.map((m) => ({ to: m.to, head: m.text.slice(0, 120) })))}`,
      );
    }
    await page.waitForTimeout(500);
  }
}

test('freeze link from a mail freezes the account, ends sessions, blocks sign-in, works once', { timeout: 180_000 }, async () => {
  await withPage(env, 'failure-freeze.png', async ({ context, page, step }) => {
    const email = uniqueEmail('fred');

    step('A: sign up and confirm email');
    await signUpAndConfirm(context, page, env.baseUrl, email);

    step('A: sign in');
    await signInWithPassword(page, env.baseUrl, email);
    await page.waitForURL(/\/security/);
    await page.getByRole('heading', { name: 'Security Center' }).first().waitFor();

    // Context B: a fresh browser context with no cookies (someone reading the mail elsewhere).
    const contextB = await env.browser.newContext();
    contextB.setDefaultTimeout(15_000);
    const pageB = await contextB.newPage();
    try {
      step('B: find the freeze link in the newest mail');
      const { path: freezePath, mailText } = await readFreezePath(pageB, env.baseUrl, email);
      assert.match(mailText, /Not you\? Freeze your account now/, `mail text: ${mailText}`);
      assert.match(freezePath, /^\/freeze\/\S+$/);

      step('B: open the freeze link (confirmation page only)');
      await pageB.goto(`${env.baseUrl}${freezePath}`);
      await pageB.getByRole('heading', { name: 'Not you?' }).first().waitFor();
      await button(pageB, 'Freeze my account now').waitFor();

      step('A: opening the link alone did not freeze — session still works');
      await page.goto(`${env.baseUrl}/security`);
      assert.equal(new URL(page.url()).pathname, '/security', `expected to stay on /security; at ${page.url()}`);
      await page.getByRole('heading', { name: 'Security Center' }).first().waitFor();

      step('B: press "Freeze my account now"');
      await button(pageB, 'Freeze my account now').click();
      await pageB.getByRole('heading', { name: 'Account frozen' }).first().waitFor();
      const frozenText = await pageB.locator('body').innerText();
      assert.ok(frozenText.includes('Your account is frozen'), `expected "Your account is frozen"; page text: ${frozenText}`);
      await pageB.screenshot({ path: join(RESULTS_DIR, 'frozen.png'), fullPage: true });

      step('A: reload /security — session ended, redirected to /signin?notice=frozen');
      await page.goto(`${env.baseUrl}/security`);
      assert.ok(page.url().includes('/signin'), `expected a redirect to /signin; at ${page.url()}`);
      assert.ok(page.url().includes('notice=frozen'), `expected notice=frozen in ${page.url()}`);
      await page.getByText('This account is frozen for its protection.').first().waitFor({ state: 'visible' });

      step('A: signing in again with the right password is refused');
      await signInWithPassword(page, env.baseUrl, email);
      await page.waitForLoadState('load');
      await page.getByText(/frozen/).first().waitFor({ state: 'visible' });
      assert.notEqual(new URL(page.url()).pathname, '/security', `sign-in must not succeed; at ${page.url()}`);
      const signinText = await page.locator('body').innerText();
      assert.ok(
        signinText.includes('This account is frozen for its protection. Contact support to restore access.'),
        `expected the frozen sign-in error; page text: ${signinText}`,
      );

      step('B: the freeze link does not work a second time, and says so at once');
      await pageB.goto(`${env.baseUrl}${freezePath}`);
      await pageB.getByRole('heading', { name: 'This link cannot freeze anything' }).first().waitFor();
      assert.equal(await button(pageB, 'Freeze my account now').count(), 0, 'no button on a used link');
      const secondText = await pageB.locator('body').innerText();
      assert.ok(secondText.includes('already used'), `expected "already used"; page text: ${secondText}`);
    } catch (err) {
      await pageB.screenshot({ path: join(RESULTS_DIR, 'failure-freeze-b.png'), fullPage: true }).catch(() => {});
      const textB = await pageB.locator('body').innerText().catch(() => '<unavailable>');
      err.message += `\n--- context B at ${pageB.url()} ---\n${textB.slice(0, 2000)}`;
      throw err;
    } finally {
      await contextB.close();
    }
  });
});
