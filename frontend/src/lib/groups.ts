/** Items grouped under "Today", "Yesterday", … by a timestamp, keeping their order. */
export function groupByDay<T>(items: readonly T[], when: (item: T) => string, now = new Date()): { label: string; items: T[] }[] {
  const startOfToday = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const day = 86_400_000;
  const labelOf = (time: number) => {
    if (time >= startOfToday) return 'Today';
    if (time >= startOfToday - day) return 'Yesterday';
    if (time >= startOfToday - 7 * day) return 'Previous 7 days';
    if (time >= startOfToday - 30 * day) return 'Previous 30 days';
    return 'Older';
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
