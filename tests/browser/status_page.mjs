// The status page in a real browser (headless Chromium, driven by playwright-core): counts
// match kpsctl, progress moves without a reload, the 400 shows in the failures table with its
// error code, the job detail lists attempts, a hostile server id is text, never script, and a
// paused batch shows a banner.
// Run by tests/browser/run, which starts the fake KPS and kpsd and sets the environment.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';

const base = process.env.KPSD_URL;
const shots = process.env.SCREENSHOT_DIR;
const hostile = process.env.HOSTILE_ID;
const kpsctl = (...args) =>
  JSON.parse(execFileSync(process.env.KPSCTL, ['--socket', process.env.KPSD_SOCKET, '--json', ...args]));
const number = (text) => Number(String(text).replace(/[^0-9]/g, ''));
const step = (what) => console.log('ok: ' + what);
// Polls `check` from here (not page.waitForFunction, which evaluates a string in the page and is
// refused by the page's CSP, as it should be).
async function until(check, what, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const dialogs = [];
  const errors = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

  const response = await page.goto(base + '/');
  const csp = response.headers()['content-security-policy'] || '';
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /default-src 'none'/);
  await page.waitForSelector('#overall-progress');
  step('page served with a strict Content-Security-Policy');

  // Progress moves as jobs finish, without a reload (the page polls the API).
  const done = async () => Number(await page.getAttribute('#overall-progress', 'data-done'));
  const first = await done();
  const total = Number(await page.getAttribute('#overall-progress', 'data-total'));
  assert.ok(first < total, `the batch should still be running when the page opens (${first}/${total})`);
  await until(async () => (await done()) > first, 'progress to move');
  const later = await done();
  step(`progress moved from ${first} to ${later} of ${total} without a reload`);
  await page.screenshot({ path: `${shots}/overview-running.png`, fullPage: true });

  // When the batch has ended, the counts on the page are kpsctl's.
  for (let i = 0; i < 240; i++) {
    const stats = kpsctl('stats');
    if (['queued', 'running', 'retrying', 'delivered'].every((s) => stats.states[s] === 0)) break;
    await page.waitForTimeout(500);
  }
  const stats = kpsctl('stats');
  const finished = stats.states.succeeded + stats.states.failed + stats.states.cancelled;
  await until(async () => (await done()) === finished, 'the page to show every job finished');
  for (const s of ['succeeded', 'failed', 'cancelled', 'queued', 'total']) {
    const shown = number(await page.textContent(`#count-${s}`));
    const expected = s === 'total' ? stats.total : stats.states[s];
    assert.equal(shown, expected, `${s}: page shows ${shown}, kpsctl says ${expected}`);
  }
  step(`counts match kpsctl --json stats (succeeded ${stats.states.succeeded}, failed ${stats.states.failed})`);
  const batchRow = await page.textContent('#batches tbody tr');
  assert.match(batchRow, /browser-batch/);
  await page.screenshot({ path: `${shots}/overview.png`, fullPage: true });

  // The failures table shows the 400 with its error code; its job detail lists the attempts.
  await page.click('#nav-failures');
  await page.waitForSelector('#failures tbody tr');
  const codes = await page.$$eval('#failures td.error-code', (tds) => tds.map((td) => td.textContent));
  assert.ok(codes.includes('KPS.4016'), `failures table codes: ${codes}`);
  step('the 400 (KPS.4016) is in the failures table');

  // The hostile server id is shown as its characters; nothing it holds ran or was parsed.
  const servers = await page.$$eval('#failures td.server', (tds) => tds.map((td) => td.textContent));
  assert.ok(servers.includes(hostile), `hostile id not shown as text: ${servers}`);
  assert.equal(await page.locator('#failures img').count(), 0);
  assert.equal(await page.locator('img').count(), 0);
  assert.deepEqual(dialogs, []);
  step('the hostile server id is rendered as text; no element made from it, no script ran');
  await page.screenshot({ path: `${shots}/failures.png`, fullPage: true });

  // Filter by batch and state (the URL carries them), then a job's detail.
  await page.fill('#filter-batch', 'browser-batch');
  await page.press('#filter-batch', 'Enter');
  await until(async () => page.url().includes('batch=browser-batch'), 'the batch filter');
  await page.waitForSelector('#failures tbody tr');
  const row = page.locator('#failures tbody tr', { hasText: 'KPS.4016' }).first();
  await row.locator('a').click();
  await page.waitForSelector('#attempts tbody tr');
  const attempts = await page.locator('#attempts tbody tr').count();
  assert.ok(attempts >= 1);
  const detail = await page.textContent('#job-fields');
  assert.match(detail, /KPS\.4016/);
  step(`job detail lists ${attempts} attempt(s)`);
  await page.screenshot({ path: `${shots}/job.png`, fullPage: true });

  // A paused batch: a canary of 2 (the other 4 jobs held) shows a banner and its row says so;
  // the operator's pause of another batch shows its own banner.
  const canary = kpsctl('enqueue', '--batch', 'canary-batch', '--canary', '2',
    'canary-1', 'canary-2', 'canary-3', 'canary-4', 'canary-5', 'canary-6');
  kpsctl('pause', '--batch', 'browser-batch');
  await page.goto(base + '/');
  const banner = `#paused-batch-${canary.batch_id}`;
  await until(async () => /canary done/.test(await page.textContent('#alerts')),
    'the canary to end and its banner to say so');
  assert.match(await page.textContent(banner), /Batch \d+ \(canary-batch\) paused \(canary\): canary done: its first 2 jobs ended/);
  assert.match(await page.textContent('#alerts'), /\(browser-batch\) paused \(operator\)/);
  // The batch table is counted every few seconds (a big batch costs a pass): wait for it.
  const canaryRow = `#batches tr[data-batch="${canary.batch_id}"]`;
  await until(async () => (await page.locator(canaryRow).count()) === 1 &&
    /paused: canary/.test(await page.textContent(canaryRow)), 'the canary batch row to say paused');
  const held = kpsctl('stats', '--batch', 'canary-batch');
  assert.equal(held.states.queued, 4, 'the canary batch\'s other 4 jobs wait');
  step('a paused batch (canary, operator) shows a banner and its row; its other jobs wait');
  await page.screenshot({ path: `${shots}/paused-batch.png`, fullPage: true });
  kpsctl('resume', '--batch', 'canary-batch');
  kpsctl('resume', '--batch', 'browser-batch');
  await until(async () => !(await page.textContent('#alerts')).includes('paused'),
    'the banners to go once resumed');
  step('resumed: the banners go');

  assert.deepEqual(errors, [], `browser errors: ${errors}`);
  step('no console errors and no CSP violations');
} finally {
  await browser.close();
}
