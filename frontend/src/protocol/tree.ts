// Which messages of a conversation's tree are shown: one version at each
// level, chosen by the reader (‹ 2/3 ›), else the one on the way to the
// newest message. Pure, like the reducer.

import type { TreeMessage } from './reducer';

/** The parent key of first messages (and their versions). */
export const ROOT = '';

/** The key siblings share: their parent's id, or `ROOT`. */
export const parentKey = (m: Pick<TreeMessage, 'parent_id'>): string => m.parent_id ?? ROOT;

/**
 * The reader's choice at one level: the version picked, and how many
 * messages the tree held then. A message created later under that level (a
 * new version, or a new turn below one) wins over the choice: what was just
 * asked for is shown, here and in every other tab.
 */
export interface Choice {
  id: string;
  at: number;
}

/** Parent key → the version the reader picked there. */
export type Choices = Readonly<Record<string, Choice>>;

export interface PathStep {
  message: TreeMessage;
  /** The versions at this level (this one included), oldest first. */
  siblings: readonly string[];
  /** Where this one is among `siblings` (0-based). */
  index: number;
}

export interface TreeIndex {
  /** Parent key → children, in creation order. */
  children: ReadonlyMap<string, readonly TreeMessage[]>;
  /** Message id → the position of the newest message of its subtree (itself included). */
  newest: ReadonlyMap<string, number>;
  byId: ReadonlyMap<string, TreeMessage>;
}

export function indexTree(tree: readonly TreeMessage[]): TreeIndex {
  const children = new Map<string, TreeMessage[]>();
  const byId = new Map<string, TreeMessage>();
  const newest = new Map<string, number>();
  tree.forEach((m, i) => {
    byId.set(m.id, m);
    newest.set(m.id, i);
    const key = parentKey(m);
    const list = children.get(key);
    if (list) list.push(m);
    else children.set(key, [m]);
  });
  // Children come after their parents: from the end, every subtree is
  // complete before it is folded into its parent.
  for (let i = tree.length - 1; i >= 0; i--) {
    const m = tree[i]!;
    if (m.parent_id == null || !byId.has(m.parent_id)) continue;
    const mine = newest.get(m.id)!;
    if (mine > newest.get(m.parent_id)!) newest.set(m.parent_id, mine);
  }
  return { children, newest, byId };
}

/**
 * The messages shown, first to last: at each level the reader's choice if
 * nothing was created under that level since, else the version whose
 * subtree holds the newest message (with no choices: the server's active
 * path, ending at the newest message).
 */
export function visiblePath(tree: readonly TreeMessage[], choices: Choices = {}, index: TreeIndex = indexTree(tree)): PathStep[] {
  const path: PathStep[] = [];
  const seen = new Set<string>();
  let key = ROOT;
  for (;;) {
    const kids = index.children.get(key);
    if (!kids || kids.length === 0) break;
    let best = kids[0]!;
    let bestNewest = -1;
    for (const kid of kids) {
      const n = index.newest.get(kid.id) ?? -1;
      if (n > bestNewest) {
        best = kid;
        bestNewest = n;
      }
    }
    const choice = choices[key];
    const chosen = choice && bestNewest < choice.at ? kids.find((k) => k.id === choice.id) : undefined;
    const message = chosen ?? best;
    if (seen.has(message.id)) break; // a cycle cannot come from a checked log; never loop on one
    seen.add(message.id);
    path.push({ message, siblings: kids.map((k) => k.id), index: kids.indexOf(message) });
    key = message.id;
  }
  return path;
}

/** The choice that shows `id` at its level, made now. */
export function choose(tree: readonly TreeMessage[], choices: Choices, id: string): Choices {
  const m = tree.find((x) => x.id === id);
  if (!m) return choices;
  return { ...choices, [parentKey(m)]: { id, at: tree.length } };
}

/** The choices that show `id` (a search result on another branch): every level above it. */
export function reveal(tree: readonly TreeMessage[], choices: Choices, id: string): Choices {
  const byId = new Map(tree.map((m) => [m.id, m]));
  let next = choices;
  const seen = new Set<string>();
  for (let m = byId.get(id); m && !seen.has(m.id); m = m.parent_id != null ? byId.get(m.parent_id) : undefined) {
    seen.add(m.id);
    next = { ...next, [parentKey(m)]: { id: m.id, at: tree.length } };
  }
  return next;
}

/**
 * The message a new question follows, when it is not the conversation's
 * newest (the reader is on another branch): what `send` carries as
 * `parent_id`. Undefined on the newest path, where the server's default is
 * the same, and when the last message shown is not a reply.
 */
export function followUpParent(tree: readonly TreeMessage[], path: readonly PathStep[]): string | undefined {
  const last = path.at(-1)?.message;
  const newest = tree.at(-1);
  return last && newest && last.id !== newest.id && last.role === 'assistant' ? last.id : undefined;
}
