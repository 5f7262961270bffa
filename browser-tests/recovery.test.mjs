// End-to-end: getting the account back. An attacker with the owner's mailbox resets the
// password; the owner freezes the account from the mail's link, files a support ticket
// without being able to sign in, an operator (enrolled with `rampart operator add`, in a
// second browser context) approves the recovery in the console, and the owner sets a new
// password and a new authenticator app and is back, with withdrawals locked for 48 hours.
// The 2-hour minimum between freeze and approval is set to 0 for this server (rampart.toml);
// the API tests check the 2 hours with a moved clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import {
  useRampart,
  withPage,
  uniqueEmail,
  signUpAndConfirm,
  signInWithPassword,
  stepUpByEmail,
  readMailedCode,
  button,
  atPath,
  base32Decode,
  freshTotp,
  RAMPART_BIN,
  RESULTS_DIR,
  readLink,
} from './lib.mjs';

const run = promisify(execFile);
const env = useRampart({ toml: '[rules]\nunfreeze_min_minutes = 0\n' });
const NEW_PASSWORD = 'Velvet-orbit-canyon-91-drums';
const ATTACKER_PASSWORD = 'Quartz-harbor-lantern-66-gulls';

test('after an attacker resets the password, the owner freezes, files a ticket, support approves, the owner is back', { timeout: 300_000 }, async () => {
  await withPage(env, 'failure-recovery.png', async ({ context, page, step }) => {
    const email = uniqueEmail('rhea');
    const usedSteps = new Set();

    step('owner: sign up, confirm, sign in');
    await signUpAndConfirm(context, page, env.baseUrl, email);
    await signInWithPassword(page, env.baseUrl, email);
    await page.waitForURL(/\/security/);

    step('attacker (with the mailbox): forgot password, reset it');
    const attacker = await env.browser.newContext();
    attacker.setDefaultTimeout(15_000);
    const ap = await attacker.newPage();
    await ap.goto(`${env.baseUrl}/signin`);
    await ap.getByRole('link', { name: 'Forgot your password?' }).click();
    await ap.waitForURL(atPath('/forgot-password'));
    await ap.locator('input[name=email]').fill(email);
    await button(ap, 'Mail me a link').click();
    await ap.getByText('a link to choose a new password is on its way').waitFor();
    const reset = await readLink(ap, env.baseUrl, email, '/reset-password/');
    await ap.goto(`${env.baseUrl}${reset.path}`);
    await ap.locator('input[name=new_password]').fill(ATTACKER_PASSWORD);
    await button(ap, 'Reset my password').click();
    await ap.waitForURL(/\/signin\?notice=password_reset/);
    await attacker.close();

    step('owner: signed out; the "password was reset" mail carries the freeze link');
    await page.goto(`${env.baseUrl}/security`);
    await page.waitForURL(/\/signin/);
    const freeze = await readLink(page, env.baseUrl, email, '/freeze/', /Your password was reset/);
    await page.goto(`${env.baseUrl}${freeze.path}`);
    await button(page, 'Freeze my account now').click();
    await page.getByRole('heading', { name: 'Account frozen' }).first().waitFor();

    step('owner: contact support without signing in, prove the mailbox');
    await page.goto(`${env.baseUrl}/signin`);
    await page.getByRole('link', { name: "Can't sign in? Contact support" }).click();
    await page.waitForURL(atPath('/support'));
    await page.locator('#support-verify input[name=email]').fill(email);
    await button(page, 'Mail me a code').click();
    await page.locator('#support-code').waitFor();
    const mailbox = await context.newPage();
    const code = await readMailedCode(mailbox, env.baseUrl, email, /contact support is (\d{6})/);
    await mailbox.close();
    await page.locator('#support-code input[name=code]').fill(code);
    await button(page, 'Continue').click();
    await page.getByRole('heading', { name: 'File a ticket' }).waitFor();

    step('owner: the ticket is pre-filled; describe, keep "unfreeze", file it');
    const uid = (await page.locator('[data-testid=uid]').innerText()).trim();
    assert.match(uid, /^\d{10}$/);
    assert.ok(await page.locator('input[name=request][value=unfreeze]').isChecked(), 'unfreeze is pre-ticked on a frozen account');
    const formText = await page.locator('#ticket-form').innerText();
    assert.ok(formText.includes('Froze the account'), `actions taken should list the freeze: ${formText}`);
    await page.locator('textarea[name=description]').fill('Someone reset my password with my mailbox; I froze the account.');
    await button(page, 'File the ticket').click();
    await page.getByText('Your ticket was filed.').waitFor();
    assert.equal((await page.locator('[data-testid=recovery-status]').first().innerText()).trim(), 'submitted');
    await page.screenshot({ path: join(RESULTS_DIR, 'recovery-ticket.png'), fullPage: true });

    step('operator: added with the CLI, enrols in a second browser context');
    const added = await run(RAMPART_BIN, ['operator', 'add', '--email', 'reviewer@platform.example', '--role', 'reviewer', '--database-url', env.dbUrl]);
    const enrolPath = added.stdout.match(/(\/console\/enrol\/[A-Za-z0-9_\-]+)/)?.[1];
    assert.ok(enrolPath, `no enrolment link in: ${added.stdout}`);
    const ops = await env.browser.newContext();
    ops.setDefaultTimeout(15_000);
    const op = await ops.newPage();
    try {
      await op.goto(`${env.baseUrl}${enrolPath}`);
      await op.locator('input[name=password]').fill('Operator-granite-sparrow-2026');
      await button(op, 'Continue').click();
      const secret = (await op.locator('[data-testid=totp-secret]').innerText()).replace(/\s+/g, '');
      const opKey = base32Decode(secret);
      const opUsed = new Set();
      const enrolCode = await freshTotp(opKey, opUsed);
      opUsed.add(enrolCode.step);
      await op.locator('input[name=code]').fill(enrolCode.code);
      await button(op, 'Finish enrolment').click();
      await op.waitForURL(/\/console\/signin/);

      step('operator: sign in with password and a fresh code');
      const signinCode = await freshTotp(opKey, opUsed);
      await op.locator('input[name=email]').fill('reviewer@platform.example');
      await op.locator('input[name=password]').fill('Operator-granite-sparrow-2026');
      await op.locator('input[name=code]').fill(signinCode.code);
      await button(op, 'Sign in').click();
      await op.locator('[data-testid=console-nav]').waitFor();

      step('operator: the recovery waits in the queue; approve it with a reason');
      await op.getByRole('link', { name: 'Recoveries' }).click();
      await op.locator('[data-testid=queue-row]').filter({ hasText: uid }).getByRole('link').click();
      await op.locator('#approve-form input[name=reason]').fill('Mailbox proved; the owner described the attack.');
      await op.locator('#approve-form').getByRole('button', { name: 'Approve' }).click();
      await op.locator('[data-testid=recovery-status]').filter({ hasText: 'approved' }).waitFor();
      await op.screenshot({ path: join(RESULTS_DIR, 'recovery-console.png'), fullPage: true });
    } catch (err) {
      await op.screenshot({ path: join(RESULTS_DIR, 'failure-recovery-console.png'), fullPage: true }).catch(() => {});
      const text = await op.locator('body').innerText().catch(() => '<unavailable>');
      err.message += `\n--- console at ${op.url()} ---\n${text.slice(0, 2000)}`;
      throw err;
    } finally {
      await ops.close();
    }

    step('owner: the recovery link sets a new password');
    const recover = await readLink(page, env.baseUrl, email, '/recover/');
    await page.goto(`${env.baseUrl}${recover.path}`);
    await page.getByRole('heading', { name: 'Finish your recovery' }).waitFor();
    await page.locator('input[name=new_password]').fill(NEW_PASSWORD);
    await button(page, 'Set my new password').click();
    await page.waitForURL(/\/signin\?notice=recovery_password_set/);

    step('owner: signs in; a new authenticator comes first');
    await signInWithPassword(page, env.baseUrl, email, NEW_PASSWORD);
    await page.waitForURL(atPath('/security'));
    await page.locator('[data-testid=recovery-required]').waitFor();
    await stepUpByEmail(context, page, env.baseUrl, email, NEW_PASSWORD);
    await button(page, 'Set up authenticator app').click();
    await page.waitForURL(atPath('/security/totp'));
    const shown = await page.locator('[data-testid=totp-secret]').innerText();
    const key = base32Decode(shown.replace(/\s+/g, ''));
    const enrol = await freshTotp(key, usedSteps);
    usedSteps.add(enrol.step);
    await page.locator('input[name=code]').fill(enrol.code);
    await button(page, 'Turn on').click();
    await page.locator('[data-testid=backup-code]').first().waitFor();
    await page.getByRole('link', { name: 'Back to Security Center', exact: true }).click();
    await page.waitForURL(atPath('/security'));

    step('owner: back, no recovery banner, withdrawals locked for 48 hours');
    assert.equal(await page.locator('[data-testid=recovery-required]').count(), 0);
    await page.goto(`${env.baseUrl}/security/factors`);
    const lock = await page.locator('[data-testid=withdrawal-lock]').filter({ hasText: 'recovery' }).first().innerText();
    assert.match(lock, /Withdrawals are locked until/);
    await page.screenshot({ path: join(RESULTS_DIR, 'recovery-back.png'), fullPage: true });
  });
});
