// Starts a chatstream node serving the built frontend, and Debian's Chromium
// through playwright-core (no browser downloads). Shared by the end-to-end
// tests and the screenshot script.

import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const frontendDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The built UI the nodes serve: CHATSTREAM_DIST, else `npm run build`'s output. */
export const distDir = path.resolve(frontendDir, process.env.CHATSTREAM_DIST ?? 'dist');
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

/** Whether a listener could bind `port` now (the previous node let it go). @param {number} port */
function portIsFree(port) {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * @typedef {object} Server
 * @property {string} url `http://127.0.0.1:<port>`
 * @property {number} port
 * @property {string} dataDir the node's DATA_DIR
 * @property {() => Promise<void>} stop SIGTERM (SIGKILL after 5 s), then wait for the exit
 * @property {() => Promise<void>} kill SIGKILL (`kill -9`), then wait for the exit
 * @property {() => string} logs the end of the node's output
 */

/**
 * Start a node and wait until /healthz answers.
 *
 * Every node gets a fresh temporary `DATA_DIR` (its SQLite history and its
 * generated secrets), removed when the node is stopped or this process ends.
 * A caller that passes `DATA_DIR` owns that directory: it is reused as it is
 * (to restart a node on its history) and never removed here. The node runs
 * with its `DATA_DIR` as working directory, so nothing lands in the caller's.
 *
 * A setting given as `undefined` is left unset (for example `AUTH_SECRET`,
 * so that the node generates one and keeps it in `DATA_DIR`).
 *
 * @param {Record<string, string | undefined>} [env] extra settings
 * @param {{ port?: number, timeoutMs?: number }} [options] `port`: listen on
 *   this port (the one of a node just stopped), waiting until it is free;
 *   else a free one
 * @returns {Promise<Server>}
 */
export async function startServer(env = {}, { port: wanted, timeoutMs = 20_000 } = {}) {
  const ownsDataDir = env.DATA_DIR === undefined;
  const dataDir = ownsDataDir ? await mkdtemp(path.join(tmpdir(), 'chatstream-e2e-data-')) : /** @type {string} */ (env.DATA_DIR);
  const removeDataDir = () => {
    if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const port = wanted ?? (await freePort());
      if (wanted !== undefined) await waitUntil(() => portIsFree(port), deadline, `port ${port} to be free`);
      const started = await spawnNode(port, dataDir, env, deadline);
      if (started === 'port-taken' && Date.now() < deadline) continue;
      if (started === 'port-taken') throw new Error(`port ${port} stayed in use`);
      return { ...started, dataDir, port, url: `http://127.0.0.1:${port}`, ...stopping(started, removeDataDir) };
    }
  } catch (error) {
    removeDataDir();
    throw error;
  }
}

/** @param {() => Promise<boolean>} condition @param {number} deadline @param {string} what */
async function waitUntil(condition, deadline, what) {
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * @param {number} port @param {string} dataDir
 * @param {Record<string, string | undefined>} env @param {number} deadline
 */
async function spawnNode(port, dataDir, env, deadline) {
  /** @type {Record<string, string | undefined>} */
  const settings = {
    ...process.env,
    BIND: `127.0.0.1:${port}`,
    STATIC_DIR: distDir,
    DEMO_TOKEN_DELAY_MS: '30',
    DEMO_REPLY_TOKENS: '80',
    AUTH_SECRET: 'e2e-auth-secret-of-at-least-32-bytes',
    ADMIN_TOKEN: 'e2e-admin-token-of-at-least-32-bytes',
    NODE_ID: 'e2e-node',
    // Every test browser is a guest from 127.0.0.1, many a minute.
    GUEST_TOKENS_PER_MINUTE: '1000000',
    API_REQUESTS_PER_SECOND: '1000000',
    ...env,
    DATA_DIR: dataDir,
  };
  for (const [name, value] of Object.entries(settings)) if (value === undefined) delete settings[name];
  const child = spawn(binary, [], {
    cwd: dataDir,
    env: /** @type {Record<string, string>} */ (settings),
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

  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      process.off('exit', killOnExit);
      // Another process took the port between the check and the bind: try again.
      if (/address already in use|AddrInUse/i.test(logs)) return /** @type {const} */ ('port-taken');
      throw new Error(`chatstream exited with ${child.exitCode ?? child.signalCode}:\n${logs}`);
    }
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      process.off('exit', killOnExit);
      throw new Error(`chatstream did not answer /healthz in time:\n${logs}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, exited, killOnExit, logs: () => logs };
}

/**
 * @param {{ child: import('node:child_process').ChildProcess, exited: Promise<unknown>, killOnExit: () => void }} node
 * @param {() => void} removeDataDir
 */
function stopping({ child, exited, killOnExit }, removeDataDir) {
  process.on('exit', removeDataDir);
  const end = async (/** @type {NodeJS.Signals} */ signal) => {
    process.off('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    process.off('exit', removeDataDir);
    removeDataDir();
  };
  return { stop: () => end('SIGTERM'), kill: () => end('SIGKILL') };
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
    // The UI follows the browser's language: English unless a test asks for another.
    locale: 'en-US',
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
