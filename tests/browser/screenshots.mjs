// Screenshots of every view while a batch is in progress (for the docs and for looking at):
//   BROWSER_JOBS=20000 BROWSER_RATE=400 BROWSER_SCRIPT=tests/browser/screenshots.mjs tests/browser/run
import { chromium } from 'playwright-core';

const base = process.env.KPSD_URL;
const shots = process.env.SCREENSHOT_DIR;
const pause = (ms) => new Promise((r) => setTimeout(r, ms));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(base + '/');
  await page.waitForSelector('#overall-progress');
  await pause(Number(process.env.SHOT_AFTER_MS || 20000));  // well into the batch
  await page.screenshot({ path: `${shots}/big-overview.png`, fullPage: true });
  await page.goto(base + '/#/failures?state=any&batch=browser-batch');
  await page.waitForSelector('#failures tbody tr');
  await pause(500);
  await page.screenshot({ path: `${shots}/big-failures.png`, fullPage: true });
  const first = await page.locator('#failures tbody tr a').first().textContent();
  await page.goto(base + '/#/job/' + first.trim());
  await page.waitForSelector('#job-fields');
  await pause(500);
  await page.screenshot({ path: `${shots}/big-job.png`, fullPage: true });
  console.log(`screenshots in ${shots}: big-overview.png, big-failures.png, big-job.png`);
} finally {
  await browser.close();
}
