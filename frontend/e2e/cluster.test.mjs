// The browser chat against the local cluster of scripts/cluster.sh (redis-server,
// three node processes, nginx in front), in headless Chromium: the node serving
// the page's WebSocket is killed with SIGKILL mid-reply, and the page reconnects
// to another node and shows the whole reply, exactly as the server stores it.
// Also what deploy/nginx.conf keeps from the public side: the operator
// endpoints, and bursts from one address.
// Run with `npm run test:e2e` after `npm run build` and `cargo build`; skipped
// only when nginx or Redis is not installed.

import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { conversationId, sendMessage, serverConversation, shownMessages, waitConnected, waitReply } from './app.mjs';
import { binary, checkPrerequisites, distDir, frontendDir, launchBrowser } from './harness.mjs';

const run = promisify(execFile);
const script = path.resolve(frontendDir, '../scripts/cluster.sh');

// Long enough that the reply is still streaming through the kill, the lease
// lapse (3 s) and the adoption by a surviving node; short enough to stay well
// inside the time budget.
const TOKEN_DELAY_MS = 40;
const REPLY_TOKENS = 150;
const TIMEOUT = 20_000;

/** What is missing to run the cluster, or '' when nothing is. */
function missingTools() {
  const has = (/** @type {string} */ tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
  const missing = [];
  // scripts/cluster.sh falls back to /usr/sbin/nginx, which is not on every PATH.
  if (!has('nginx') && !existsSync('/usr/sbin/nginx')) missing.push('nginx');
  if (!has('redis-server') || !has('redis-cli')) missing.push('redis-server (and its redis-cli)');
  return missing.length ? `the local cluster needs ${missing.join(' and ')}, which is not installed` : '';
}

/** @param {number} pid */
function alive(pid) {
  try {
    // A zombie (killed, not yet reaped by its adoptive parent) is gone as far as we care.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Wait for a condition outside the page, polling, within a deadline. */
async function waitFor(/** @type {() => boolean | Promise<boolean>} */ condition, /** @type {string} */ what, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A GET sent from the local address `from`, on a connection of its own.
 * @returns {Promise<{ status: number | undefined, body: string }>}
 */
function get(/** @type {string} */ url, /** @type {string} */ from) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { localAddress: from, agent: false }, (response) => {
        let body = '';
        response.on('data', (chunk) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode, body }));
      })
      .on('error', reject);
  });
}

/** The cluster's state directory, its settings (cluster.env) and its processes. */
class Cluster {
  /** @type {Record<string, string>} */
  env = {};
  stopped = false;

  /** @param {string} dir */
  constructor(dir) {
    this.dir = dir;
  }

  async up() {
    await run('bash', [script, 'up', this.dir], {
      timeout: 30_000,
      env: {
        ...process.env,
        // Always the debug build: without it the script makes a release build.
        CHATSTREAM_BIN: binary,
        STATIC_DIR: distDir,
        DEMO_TOKEN_DELAY_MS: String(TOKEN_DELAY_MS),
        DEMO_REPLY_TOKENS: String(REPLY_TOKENS),
      },
    });
    const text = await readFile(path.join(this.dir, 'cluster.env'), 'utf8');
    this.env = Object.fromEntries(text.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  }

  get url() {
    return `http://127.0.0.1:${this.env.NGINX_PORT}`;
  }

  /** @param {string} name node-1, redis, nginx… @returns {number | undefined} */
  pid(name) {
    try {
      return Number(readFileSync(path.join(this.dir, `${name}.pid`), 'utf8').trim()) || undefined;
    } catch {
      return undefined;
    }
  }

  /** The reply ids node `n` is generating now, asked of the node itself. @param {number} n */
  async generations(n) {
    const response = await fetch(`http://127.0.0.1:${this.env[`NODE${n}_PORT`]}/admin/actors`, {
      headers: { Authorization: `Bearer ${this.env.ADMIN_TOKEN}` },
    });
    const body = /** @type {{ actors?: { kind: string, key: string }[] }} */ (await response.json());
    return (body.actors ?? []).filter((a) => a.kind === 'generation').map((a) => a.key);
  }

  /** SIGKILL node `n` and wait until its process is gone. @param {number} n */
  async kill(n) {
    const pid = this.pid(`node-${n}`);
    assert.ok(pid, `node-${n}.pid names the process`);
    process.kill(pid, 'SIGKILL');
    await waitFor(() => !alive(pid), `node-${n} (pid ${pid}) to die`, 5_000);
    // `down` must not signal this pid again: it may belong to another process by then.
    await rm(path.join(this.dir, `node-${n}.pid`), { force: true });
  }

  /** `scripts/cluster.sh down`, then wait (bounded) for every process to end. */
  async down() {
    if (this.stopped) return;
    this.stopped = true;
    const pids = ['nginx', 'node-1', 'node-2', 'node-3', 'redis'].map((n) => this.pid(n)).filter((p) => p !== undefined);
    await run('bash', [script, 'down', this.dir], { timeout: 10_000 }).catch((e) => console.error(`cluster.sh down: ${e}`));
    await waitFor(() => pids.every((p) => !alive(p)), 'the cluster to stop', 10_000).catch((e) => {
      // Only processes this cluster started, by their ids.
      console.error(`${e.message}; sending SIGKILL`);
      for (const p of pids) if (alive(p)) process.kill(p, 'SIGKILL');
    });
  }

  /** Last lines of every log, for a failure report. */
  logs() {
    return ['node-1', 'node-2', 'node-3', 'redis', 'nginx-error']
      .map((name) => {
        try {
          const lines = readFileSync(path.join(this.dir, `${name}.log`), 'utf8').trimEnd().split('\n');
          return `--- ${name}.log (last 15 lines)\n${lines.slice(-15).join('\n')}`;
        } catch {
          return `--- ${name}.log: none`;
        }
      })
      .join('\n');
  }
}

const skip = missingTools();

describe('the browser chat on the local cluster', { skip: skip || false }, () => {
  /** @type {Cluster | undefined} */
  let cluster;
  /** @type {Awaited<ReturnType<typeof launchBrowser>> | undefined} */
  let browser;
  let passed = false;
  // However this process ends, the cluster does not outlive it.
  const downOnExit = () => {
    if (cluster && !cluster.stopped) spawnSync('bash', [script, 'down', cluster.dir], { timeout: 10_000 });
  };

  before(
    async () => {
      checkPrerequisites();
      cluster = new Cluster(await mkdtemp(path.join(tmpdir(), 'chatstream-e2e-cluster-')));
      process.once('exit', downOnExit);
      await cluster.up();
      browser = await launchBrowser();
    },
    { timeout: 40_000 },
  );

  after(
    async () => {
      await browser?.close().catch((e) => console.error(`closing the browser: ${e}`));
      if (!cluster) return;
      if (!passed) console.error(`local cluster logs (${cluster.dir}):\n${cluster.logs()}`);
      await cluster.down();
      process.off('exit', downOnExit);
      await rm(cluster.dir, { recursive: true, force: true });
    },
    { timeout: 30_000 },
  );

  test('nginx hides the operator endpoints, and limits a busy address but not loopback', async () => {
    assert.ok(cluster);
    const admin = { Authorization: `Bearer ${cluster.env.ADMIN_TOKEN}` };
    for (const route of ['/metrics', '/admin/actors', '/admin/actors?scope=cluster']) {
      /** @type {Response} */
      const response = await fetch(`${cluster.url}${route}`, { headers: admin });
      assert.equal(response.status, 404, route);
      assert.equal((await response.json()).error.code, 'not_found', route);
    }
    // The nodes still serve them, on their own addresses.
    assert.equal((await fetch(`http://127.0.0.1:${cluster.env.NODE1_PORT}/metrics`)).status, 200);

    // A burst of 120 requests at /api/ (no token: each request a node answers
    // is a 401), 20 at a time so as to stay under the 32 requests in progress
    // an address may have: the rate (20/s, burst 60) is what refuses them.
    // Only 127.0.0.1 and ::1 are exempt, so 127.0.0.2 stands for a client.
    const burst = async (/** @type {string} */ from) => {
      /** @type {{ status: number | undefined, body: string }[]} */
      const answers = [];
      for (let batch = 0; batch < 6; batch++) {
        answers.push(...(await Promise.all(Array.from({ length: 20 }, () => get(`${cluster?.url}/api/conversations`, from)))));
      }
      const limited = answers.filter((a) => a.status === 429);
      for (const a of limited) assert.equal(JSON.parse(a.body).error.code, 'rate_limited', 'the contract\'s body');
      return { answered: answers.filter((a) => a.status === 401).length, limited: limited.length };
    };
    const client = await burst('127.0.0.2');
    assert.ok(client.limited > 0 && client.answered >= 61, `what goes beyond the burst of 60 is refused: ${JSON.stringify(client)}`);
    assert.equal(client.answered + client.limited, 120);
    assert.deepEqual(await burst('127.0.0.1'), { answered: 120, limited: 0 });
  });

  test('the node serving the page is killed mid-reply; the page reconnects to another and completes the reply', { timeout: 50_000 }, async () => {
    assert.ok(cluster && browser);
    const page = await browser.context.newPage();

    // Every `welcome` tells which node a socket landed on; every `subscribe` shows what it resumed from.
    /** @type {{ node: string, at: number }[]} */
    const welcomes = [];
    /** @type {{ conversation_id: string, since?: { seq: number }, at: number }[]} */
    const subscribes = [];
    /** @type {{ seq: number, ts: number, kind: string, at: number }[]} */
    const events = [];
    /** @type {{ seq: number, at: number }[]} */
    const snapshots = [];
    page.on('websocket', (ws) => {
      ws.on('framereceived', ({ payload }) => {
        const frame = JSON.parse(String(payload));
        if (frame.type === 'welcome') welcomes.push({ node: frame.node_id, at: Date.now() });
        if (frame.type === 'event') events.push({ seq: frame.seq, ts: frame.ts, kind: frame.event?.kind, at: Date.now() });
        if (frame.type === 'snapshot') snapshots.push({ seq: frame.seq, at: Date.now() });
      });
      ws.on('framesent', ({ payload }) => {
        const frame = JSON.parse(String(payload));
        if (frame.type === 'subscribe') subscribes.push({ ...frame, at: Date.now() });
      });
    });

    await page.goto(cluster.url);
    await waitConnected(page);

    // Record every state of the reply and of the indicator as the page shows them. The reply is
    // recorded raw (its Markdown source, the message's data-content): rendered text drops the
    // syntax, and a growing table renders as paragraphs until its delimiter row arrives.
    await page.evaluate(() => {
      /** @type {any} */ (window).__reply = [];
      /** @type {any} */ (window).__connection = [];
      const record = () => {
        const w = /** @type {any} */ (window);
        const conn = document.querySelector('[data-testid=connection]');
        // The indicator names its node in `data-node` (and its tooltip), not in its text.
        const state = { state: conn?.getAttribute('data-state'), text: conn?.getAttribute('data-node') ?? '' };
        const lastConn = w.__connection.at(-1);
        if (!lastConn || lastConn.state !== state.state || lastConn.text !== state.text) w.__connection.push({ ...state, at: Date.now() });
        const replies = document.querySelectorAll('[data-testid=message][data-role=assistant]');
        const el = replies[replies.length - 1];
        if (!el) return;
        const reply = { text: el.getAttribute('data-content') ?? '', status: el.getAttribute('data-status') ?? '' };
        const lastReply = w.__reply.at(-1);
        if (!lastReply || lastReply.text !== reply.text || lastReply.status !== reply.status) w.__reply.push({ ...reply, at: Date.now() });
      };
      record();
      new MutationObserver(record).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
    });

    const question = 'Keep talking while your node dies';
    await sendMessage(page, question);
    const beforeKill = await waitReply(page, { longerThan: 40, status: 'streaming' });
    const id = await conversationId(page);

    // The node serving the page, as the indicator says it and as the socket's welcome said it.
    const indicator = await page.locator('[data-testid=connection]').getAttribute('data-node');
    const victim = Number(/\bnode-(\d+)\b/.exec(indicator ?? '')?.[1]);
    assert.ok(victim >= 1 && victim <= 3, `the indicator names the node: "${indicator}"`);
    assert.equal(welcomes.at(-1)?.node, `node-${victim}`, 'the indicator names the node of the last welcome');

    // The reply's generation runs on that node too (the send went over its socket): killing it orphans the reply.
    const replyId = (await serverConversation(page, id)).messages.at(-1)?.id;
    const generating = [];
    for (const n of [1, 2, 3]) if ((await cluster.generations(n)).includes(/** @type {string} */ (replyId))) generating.push(n);
    assert.deepEqual(generating, [victim], `node-${victim} generates reply ${replyId}`);

    const shownAtKill = (await waitReply(page, { longerThan: beforeKill.text.length - 1 })).text;
    const killedAt = Date.now();
    await cluster.kill(victim);

    // The page notices, reconnects through nginx to a surviving node, and the reply goes on there.
    await page.waitForFunction(
      (victim) => {
        const el = document.querySelector('[data-testid=connection]');
        const node = /\bnode-(\d+)\b/.exec(el?.getAttribute('data-node') ?? '')?.[1];
        return el?.getAttribute('data-state') === 'connected' && node !== undefined && Number(node) !== victim;
      },
      victim,
      { timeout: TIMEOUT },
    );
    const reconnectedAt = Date.now();
    const survivor = /\bnode-(\d+)\b/.exec((await page.locator('[data-testid=connection]').getAttribute('data-node')) ?? '')?.[0];
    const done = await waitReply(page, { status: 'complete' });
    const completedAt = Date.now();

    // The server's copy, read through nginx with the page's own token.
    const conversation = await serverConversation(page, id);
    assert.deepEqual(
      conversation.messages.map((m) => [m.role, m.status]),
      [
        ['user', 'complete'],
        ['assistant', 'complete'],
      ],
    );
    const stored = /** @type {{ content: string }} */ (conversation.messages[1]).content;
    assert.equal(stored.trim().split(/\s+/).length, REPLY_TOKENS, 'the stored reply has every token once');
    assert.equal(done.text, stored, 'the page shows exactly the stored reply');
    assert.deepEqual(
      (await shownMessages(page)).map((m) => [m.role, m.text]),
      [
        ['user', question],
        ['assistant', stored],
      ],
    );

    // Every state the page showed grew from the one before: nothing repeated, nothing taken back.
    /** @type {{ text: string, status: string, at: number }[]} */
    const shown = await page.evaluate(() => /** @type {any} */ (window).__reply);
    for (const [i, s] of shown.entries()) {
      assert.ok(stored.startsWith(s.text), `shown state ${i} is a prefix of the stored reply: "${s.text}"`);
      if (i > 0) assert.ok(s.text.startsWith(shown[i - 1].text), `shown state ${i} extends state ${i - 1}`);
    }
    assert.ok(stored.startsWith(shownAtKill) && shownAtKill.length < stored.length, 'the kill came mid-reply');
    const resumed = shown.find((s) => s.at > killedAt && s.text.length > shownAtKill.length);
    assert.ok(resumed, 'the reply grew after the kill');

    // The indicator went from the victim, through reconnecting, to the survivor; the socket resumed with `since`.
    /** @type {{ state: string, text: string, at: number }[]} */
    const connection = await page.evaluate(() => /** @type {any} */ (window).__connection);
    const afterKill = connection.filter((c) => c.at >= killedAt);
    assert.ok(afterKill.some((c) => c.state === 'reconnecting'), `shown as reconnecting: ${JSON.stringify(afterKill)}`);
    assert.notEqual(survivor, `node-${victim}`);
    assert.equal(welcomes.at(-1)?.node, survivor, 'the last welcome came from the node the indicator names');
    const resume = subscribes.find((s) => s.at > killedAt && s.conversation_id === id);
    assert.ok(resume?.since && resume.since.seq > 0, `resubscribed with since: ${JSON.stringify(resume)}`);
    // Across both sockets, the events arrived in order and each once.
    for (const [i, e] of events.entries()) if (i > 0) assert.ok(e.seq > events[i - 1].seq, `event seq ${e.seq} after ${events[i - 1].seq}`);

    const reconnecting = afterKill.find((c) => c.state === 'reconnecting');
    // The longest pause in the reply as the page showed it: the lease lapsing and a survivor adopting the reply.
    let pause = 0;
    for (const [i, s] of shown.entries()) if (i > 0 && s.at > killedAt) pause = Math.max(pause, s.at - shown[i - 1].at);
    const seqs = events.map((e) => e.seq);
    const repeated = seqs.filter((q, i) => seqs.indexOf(q) !== i);
    console.log(
      `frames: ${events.length} events, seq ${Math.min(...seqs)}..${Math.max(...seqs)}, repeated seqs ${JSON.stringify(repeated)}, ` +
        `snapshots ${JSON.stringify(snapshots.map((s) => ({ seq: s.seq, afterKill: s.at - killedAt })))}, ` +
        `subscribes ${JSON.stringify(subscribes.map((s) => ({ since: s.since, afterKill: s.at - killedAt })))}`,
    );
    console.log(
      [
        `killed node-${victim} (generating the reply) at ${shownAtKill.trim().split(/\s+/).length}/${REPLY_TOKENS} tokens;`,
        `shown reconnecting after ${reconnecting ? reconnecting.at - killedAt : '?'} ms,`,
        `connected to ${survivor} after ${reconnectedAt - killedAt} ms,`,
        `reply growing again after ${resumed.at - killedAt} ms, longest pause ${pause} ms, complete after ${completedAt - killedAt} ms`,
        `(${shown.length} states shown, ${welcomes.length} welcomes: ${welcomes.map((w) => w.node).join(', ')})`,
      ].join(' '),
    );
    passed = true;
  });
});
