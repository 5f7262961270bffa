// End-to-end: a held withdrawal cancelled from the "Withdrawal requested: held" mail.
// The owner signs up, sets a withdraw delay of 1 day on /security/withdrawals; the platform
// (a token from `rampart platform-token add`) asks about a withdrawal, which is held; a
// browser with no cookies opens the mailed cancel link (opening alone does nothing),
// presses the button, and the owner's page shows the withdrawal cancelled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  useRampart,
  withPage,
  uniqueEmail,
  signUpAndConfirm,
  signInWithPassword,
  button,
  RAMPART_BIN,
} from './lib.mjs';

const env = useRampart();

async function readCancelPath(page, baseUrl, email, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await page.goto(`${baseUrl}/dev/mailbox`);
    const mails = await page.$$eval('article[data-testid=mail]', (els) =>
      els.map((e) => ({ to: e.getAttribute('data-to'), text: e.innerText })),
    );
    const mail = mails.find((m) => m.to === email && /\/withdrawals\/cancel\//.test(m.text));
    if (mail) {
      const m = mail.text.match(/(\/withdrawals\/cancel\/[A-Za-z0-9_\-.~%]+)/);
      assert.ok(m, 'a cancel path in the mail');
      return { path: m[1], text: mail.text };
    }
    if (Date.now() > deadline) throw new Error(`no held-withdrawal mail for ${email}`);
    await page.waitForTimeout(500);
  }
}

test('a held withdrawal is cancelled from the mailed link without signing in', { timeout: 180_000 }, async () => {
  await withPage(env, 'failure-withdrawal.png', async ({ context, page, step }) => {
    const email = uniqueEmail('wendy');
    step('owner: sign up, sign in');
    await signUpAndConfirm(context, page, env.baseUrl, email);
    await signInWithPassword(page, env.baseUrl, email);
    await page.waitForURL(/\/security/);
    const uid = (await page.getByTestId('uid').innerText()).trim();

    step('owner: set a withdraw delay of 1 day');
    await page.getByRole('link', { name: 'Withdrawals', exact: true }).click();
    await page.waitForURL(/\/security\/withdrawals/);
    await page.getByLabel('Days (0–7)').fill('1');
    await button(page, 'Set delay').click();
    await page.getByTestId('notice').waitFor();
    assert.match(await page.content(), /held for <strong>1 day\(s\)<\/strong>/);

    step('platform: a token, then a withdrawal request');
    const out = execFileSync(RAMPART_BIN, ['platform-token', 'add', 'browser-test', '--database-url', env.dbUrl], {
      encoding: 'utf8',
    });
    const token = out.trim().split('\n').pop();
    assert.match(token, /^rmpt_/);
    const r = await fetch(`${env.baseUrl}/api/v1/platform/withdrawals`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        request_id: `browser-${Date.now()}`,
        account_uid: uid,
        asset: 'BTC',
        network: 'BTC',
        amount: '0.5',
        address: 'bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq',
        via: 'session',
      }),
    });
    assert.equal(r.status, 200, await r.clone().text());
    const answer = await r.json();
    assert.equal(answer.state, 'held');
    assert.equal(answer.reasons[0].code, 'withdraw_delay');

    step('stranger browser: open the mailed link, then press the button');
    const other = await env.browser.newContext();
    try {
      const p2 = await other.newPage();
      const { path, text } = await readCancelPath(p2, env.baseUrl, email);
      assert.match(text, /0\.5 BTC on BTC/);
      await p2.goto(`${env.baseUrl}${path}`);
      await p2.getByRole('heading', { name: 'Cancel this withdrawal?' }).waitFor();
      await button(p2, 'Cancel this withdrawal').click();
      await p2.getByRole('heading', { name: 'Withdrawal cancelled' }).waitFor();
      assert.match(await p2.content(), /Nothing was sent/);
      step('the link works once');
      await p2.goto(`${env.baseUrl}${path}`);
      await p2.getByRole('heading', { name: 'This link cannot cancel anything' }).waitFor();
    } finally {
      await other.close();
    }

    step('owner: the page shows it cancelled');
    await page.goto(`${env.baseUrl}/security/withdrawals`);
    const row = page.getByTestId('withdrawal').first();
    assert.equal(await row.getAttribute('data-state'), 'cancelled');
  });
});
