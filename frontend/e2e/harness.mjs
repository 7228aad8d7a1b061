// Starts a chatstream node serving the built frontend, and Debian's Chromium
// through playwright-core (no browser downloads). Shared by the end-to-end
// tests and the screenshot script.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const frontendDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const distDir = path.join(frontendDir, 'dist');
/** The node binary (absolute): CHATSTREAM_BIN, else the debug build. */
export const binary = path.resolve(frontendDir, process.env.CHATSTREAM_BIN ?? '../target/debug/chatstream');
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Fail early, saying what to do, instead of timing out later. */
export function checkPrerequisites() {
  const missing = [];
  if (!existsSync(path.join(distDir, 'index.html'))) missing.push(`${distDir}/index.html (run \`npm run build\`)`);
  if (!existsSync(binary)) missing.push(`${binary} (run \`cargo build\`, or set CHATSTREAM_BIN)`);
  if (!existsSync(chromiumPath)) missing.push(`${chromiumPath} (run \`apt-get install -y chromium\`)`);
  if (missing.length) throw new Error(`end-to-end prerequisites missing:\n  ${missing.join('\n  ')}`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

/**
 * Start a node on a free port and wait until /healthz answers.
 * @param {Record<string, string>} [env] extra settings
 */
export async function startServer(env = {}) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(binary, [], {
    env: {
      ...process.env,
      BIND: `127.0.0.1:${port}`,
      STATIC_DIR: distDir,
      DEMO_TOKEN_DELAY_MS: '30',
      DEMO_REPLY_TOKENS: '80',
      AUTH_SECRET: 'e2e-auth-secret-of-at-least-32-bytes',
      ADMIN_TOKEN: 'e2e-admin-token-of-at-least-32-bytes',
      NODE_ID: 'e2e-node',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  const keep = (/** @type {Buffer} */ chunk) => {
    logs = (logs + chunk.toString()).slice(-20_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // Never leave a node running when this process ends, however it ends.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`chatstream exited with ${child.exitCode}:\n${logs}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`chatstream did not answer /healthz within 20 s:\n${logs}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  return {
    url,
    async stop() {
      process.off('exit', killOnExit);
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * A fresh browser profile; its pages share localStorage, so they are one guest.
 * @param {Omit<import('playwright-core').LaunchOptions & import('playwright-core').BrowserContextOptions, 'executablePath'>} [options]
 */
export async function launchBrowser(options = {}) {
  const profile = await mkdtemp(path.join(tmpdir(), 'chatstream-e2e-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
    viewport: { width: 1280, height: 800 },
    ...options,
  });
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}
