// Writes the PNG icons of the web app manifest (public/icon-192.png,
// public/icon-512.png and the maskable public/icon-maskable-512.png) from
// public/favicon.svg, drawn by headless Chromium at each size. The PNGs are
// committed; run `npm run icons` after changing the SVG.

import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { frontendDir } from '../e2e/harness.mjs';

const publicDir = path.join(frontendDir, 'public');
const svg = await readFile(path.join(publicDir, 'favicon.svg'), 'utf8');
// The maskable icon keeps its mark inside the safe zone (the middle 80%) on a full-bleed background.
const maskable = svg
  .replace('<rect width="32" height="32" rx="8" fill="#4f46e5"/>', '<rect width="32" height="32" fill="#4f46e5"/>')
  .replace(/<path /, '<path transform="translate(3.2 3.2) scale(0.8)" ');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
try {
  for (const [name, size, source] of /** @type {const} */ ([
    ['icon-192.png', 192, svg],
    ['icon-512.png', 512, svg],
    ['icon-maskable-512.png', 512, maskable],
  ])) {
    const page = await browser.newPage({ viewport: { width: size, height: size } });
    const sized = source.replace('<svg ', `<svg width="${size}" height="${size}" `);
    await page.setContent(`<html><body style="margin:0;background:transparent">${sized}</body></html>`);
    await writeFile(path.join(publicDir, name), await page.screenshot({ omitBackground: true, type: 'png' }));
    await page.close();
    console.log(`public/${name} (${size}×${size})`);
  }
} finally {
  await browser.close();
}
