import { en, type Dict } from '../i18n/en';

type DayLabels = Pick<Dict, 'today' | 'yesterday' | 'previous7Days' | 'previous30Days' | 'older'>;

/** Items grouped under "Today", "Yesterday", … by a timestamp, keeping their order. */
export function groupByDay<T>(
  items: readonly T[],
  when: (item: T) => string,
  now = new Date(),
  t: DayLabels = en,
): { label: string; items: T[] }[] {
  const startOfToday = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const day = 86_400_000;
  const labelOf = (time: number) => {
    if (time >= startOfToday) return t.today;
    if (time >= startOfToday - day) return t.yesterday;
    if (time >= startOfToday - 7 * day) return t.previous7Days;
    if (time >= startOfToday - 30 * day) return t.previous30Days;
    return t.older;
  };
  const groups: { label: string; items: T[] }[] = [];
  for (const item of items) {
    const label = labelOf(Date.parse(when(item)));
    const last = groups.at(-1);
    if (last?.label === label) last.items.push(item);
    else groups.push({ label, items: [item] });
  }
  return groups;
}
