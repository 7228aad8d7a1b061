// The browser render benchmark (`npm run bench:render`): main-thread CPU time
// per delta while a 20,000-character reply with code blocks streams into one
// message, with the renderer before issue 13 (`whole`: the whole text parsed,
// sanitized and highlighted on every delta) and after (`blocks`: only the
// unfinished block). Builds bench/render.html with Vite, serves it on
// loopback, and drives headless Chromium (CHROMIUM_PATH, default
// /usr/bin/chromium), alternating the two in one session, ROUNDS times each
// (default 4), so that a noisy machine weighs on both alike.
//
// Per delta it reports the synchronous cost measured in the page (React
// render and commit, Markdown, style and layout) and Chromium's own
// `TaskDuration` (every main-thread task, paint included, from CDP
// `Performance.getMetrics`) divided by the number of deltas.

import { createServer } from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { build } from 'vite';
import react from '@vitejs/plugin-react';
import { frontendDir } from '../e2e/harness.mjs';

const ROUNDS = Number(process.env.ROUNDS ?? 4);
const TARGET_CHARS = 20_000;

/** A deterministic reply of about 20,000 characters: prose, lists, a table, maths and fenced code. */
export function benchReply() {
  const code = {
    rust: [
      'use std::collections::HashMap;',
      '',
      '/// Counts the words of a text, most frequent first.',
      'pub fn word_counts(text: &str) -> Vec<(String, usize)> {',
      '    let mut counts: HashMap<String, usize> = HashMap::new();',
      '    for word in text.split_whitespace() {',
      '        let word = word.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();',
      '        if !word.is_empty() {',
      '            *counts.entry(word).or_insert(0) += 1;',
      '        }',
      '    }',
      '    let mut sorted: Vec<_> = counts.into_iter().collect();',
      '    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));',
      '    sorted',
      '}',
    ],
    typescript: [
      "import { useEffect, useState } from 'react';",
      '',
      'export interface Page<T> { items: T[]; next: string | null }',
      '',
      'export function usePages<T>(load: (cursor: string | null) => Promise<Page<T>>) {',
      '  const [items, setItems] = useState<T[]>([]);',
      '  const [next, setNext] = useState<string | null>(null);',
      '  useEffect(() => {',
      '    let live = true;',
      '    void load(null).then((page) => {',
      '      if (!live) return;',
      '      setItems(page.items);',
      '      setNext(page.next);',
      '    });',
      '    return () => { live = false; };',
      '  }, [load]);',
      '  return { items, next };',
      '}',
    ],
    python: [
      'from dataclasses import dataclass',
      'from heapq import heappush, heappop',
      '',
      '@dataclass(order=True)',
      'class Item:',
      '    priority: int',
      '    name: str',
      '',
      'def dijkstra(graph: dict[str, dict[str, int]], start: str) -> dict[str, int]:',
      '    """Shortest distances from start to every reachable node."""',
      '    dist = {start: 0}',
      '    queue = [Item(0, start)]',
      '    while queue:',
      '        item = heappop(queue)',
      '        for neighbour, weight in graph[item.name].items():',
      '            d = item.priority + weight',
      '            if d < dist.get(neighbour, float("inf")):',
      '                dist[neighbour] = d',
      '                heappush(queue, Item(d, neighbour))',
      '    return dist',
    ],
  };
  const prose = [
    'A streaming reply is shown while it is written, so every delta has to be rendered before the next one arrives.',
    'The reader sees the text grow a few words at a time, and the page must stay responsive while it does.',
    'Highlighting a code block is the most expensive part of rendering, and sanitizing the HTML comes second.',
    'When the whole message is rendered again on every delta, the cost of a delta grows with the length of the reply.',
  ];
  const parts = [];
  let section = 0;
  while (parts.join('').length < TARGET_CHARS) {
    const languages = /** @type {(keyof typeof code)[]} */ (Object.keys(code));
    const language = languages[section % languages.length];
    parts.push(
      `## Part ${section + 1}: ${language}\n\n`,
      `${prose[section % prose.length]} ${prose[(section + 1) % prose.length]}\n\n`,
      `- the first point of part ${section + 1}, with \`inline code\`\n- a second point, **in bold**\n- a third, with a [link](https://example.com/${section})\n\n`,
      `\`\`\`${language}\n${code[language].join('\n')}\n\`\`\`\n\n`,
      `| Step | Cost | Note |\n| --- | ---: | --- |\n| parse | ${section + 3} ms | the lexer |\n| render | ${section + 5} ms | HTML |\n\n`,
      section % 2 === 0 ? `The running time is $O((V + E) \\log V)$ with a binary heap.\n\n` : `$$\n\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}\n$$\n\n`,
    );
    section++;
  }
  return parts.join('').slice(0, TARGET_CHARS);
}

/** The reply cut into deltas of one to four words (with their spaces and newlines), as a model's tokens arrive coalesced. */
/** @param {string} text */
export function deltasOf(text) {
  const pieces = text.match(/\s*\S+/g) ?? [];
  const deltas = [];
  for (let i = 0, n = 0; i < pieces.length; n++) {
    const take = 1 + (n % 4);
    deltas.push(pieces.slice(i, i + take).join(''));
    i += take;
  }
  const rest = text.slice(deltas.join('').length);
  if (rest) deltas.push(rest);
  return deltas;
}

/** @param {number[]} values */
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};
/** @param {number[]} values @param {number} p */
const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
};
/** @param {number[]} values */
const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;

async function main() {
  const outDir = await mkdtemp(path.join(tmpdir(), 'chatstream-bench-'));
  await build({
    configFile: false,
    root: frontendDir,
    logLevel: 'warn',
    plugins: [react()],
    build: { outDir, emptyOutDir: true, rollupOptions: { input: path.join(frontendDir, 'bench/render.html') } },
  });
  const server = createServer(async (request, response) => {
    const file = path.join(outDir, decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname));
    if (!file.startsWith(outDir)) return void response.writeHead(403).end();
    try {
      const body = await readFile(file);
      const type = file.endsWith('.html') ? 'text/html' : file.endsWith('.js') ? 'text/javascript' : file.endsWith('.css') ? 'text/css' : 'application/octet-stream';
      response.writeHead(200, { 'Content-Type': type }).end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-timer-throttling', '--disable-renderer-backgrounding'],
  });
  const reply = benchReply();
  const deltas = deltasOf(reply);
  const code = (reply.match(/^```\w/gm) ?? []).length;
  console.log(`reply: ${reply.length} characters, ${code} code blocks, ${deltas.length} deltas; ${ROUNDS} rounds, modes alternating`);
  /** @type {Record<string, {sync: number[], task: number[], p95: number[], last: number[]}>} */
  const results = { whole: { sync: [], task: [], p95: [], last: [] }, blocks: { sync: [], task: [], p95: [], last: [] } };
  let shown = /** @type {Record<string, string>} */ ({});
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which goes first, too.
      const order = round % 2 === 0 ? ['whole', 'blocks'] : ['blocks', 'whole'];
      for (const mode of order) {
        const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
        await page.goto(`http://127.0.0.1:${port}/bench/render.html?mode=${mode}`);
        await page.waitForFunction(() => 'bench' in window);
        const cdp = await page.context().newCDPSession(page);
        await cdp.send('Performance.enable', { timeDomain: 'threadTicks' });
        const taskDuration = async () =>
          (await cdp.send('Performance.getMetrics')).metrics.find((m) => m.name === 'TaskDuration')?.value ?? 0;
        const before = await taskDuration();
        const costs = /** @type {number[]} */ (await page.evaluate((d) => /** @type {any} */ (window).bench.run(d), deltas));
        const task = ((await taskDuration()) - before) * 1000;
        shown[mode] = await page.evaluate(() => /** @type {any} */ (window).bench.shown());
        const r = results[mode];
        r.sync.push(mean(costs));
        r.p95.push(percentile(costs, 0.95));
        r.last.push(mean(costs.slice(-100)));
        r.task.push(task / deltas.length);
        console.log(
          `round ${round + 1} ${mode.padEnd(6)}: sync ${mean(costs).toFixed(2)} ms/delta (median ${median(costs).toFixed(2)}, p95 ${percentile(costs, 0.95).toFixed(2)}, last 100 ${mean(costs.slice(-100)).toFixed(2)}), TaskDuration ${(task / deltas.length).toFixed(2)} ms/delta`,
        );
        await page.close();
      }
    }
  } finally {
    await browser.close();
    server.close();
    await rm(outDir, { recursive: true, force: true });
  }
  /** @param {string} html */
  const normalize = (html) => html.replace(/>\s+</g, '><').trim();
  const same = normalize(shown.whole) === normalize(shown.blocks);
  console.log(`final HTML identical in both modes: ${same}`);
  console.log('\nmedian of the rounds, per delta:');
  console.log('| renderer | sync mean (ms) | sync p95 (ms) | last 100 deltas (ms) | TaskDuration (ms) |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const mode of ['whole', 'blocks']) {
    const r = results[mode];
    console.log(`| ${mode} | ${median(r.sync).toFixed(2)} | ${median(r.p95).toFixed(2)} | ${median(r.last).toFixed(2)} | ${median(r.task).toFixed(2)} |`);
  }
  if (!same) process.exitCode = 1;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
