// Small helpers for the reliability reports: percentiles, fixed-width
// buckets and ASCII histograms.

/** The p-th percentile (0..100) of numbers, by nearest rank; undefined for none. */
export function percentile(values, p) {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

/** Rounds to one decimal (for reports). */
export const round1 = (value) => (value === undefined ? undefined : Math.round(value * 10) / 10);

/**
 * Counts values per bucket of `width` from `start` (default: the first
 * bucket that holds the smallest value) to the last bucket holding a value.
 * @returns {{ from: number, to: number, count: number }[]}
 */
export function bucketize(values, width, start) {
  if (values.length === 0) return [];
  let min = Infinity;
  let max = -Infinity;
  for (const value of values) {
    if (value < min) min = value;
    if (value > max) max = value;
  }
  const first = start ?? Math.floor(min / width) * width;
  const count = Math.floor((max - first) / width) + 1;
  const buckets = Array.from({ length: count }, (_, i) => ({ from: first + i * width, to: first + (i + 1) * width, count: 0 }));
  for (const value of values) {
    const index = Math.floor((value - first) / width);
    if (index >= 0 && index < count) buckets[index].count++;
  }
  return buckets;
}

/** The largest bucket's count and its share of all values. */
export function maxBucket(buckets) {
  let max = 0;
  let total = 0;
  for (const bucket of buckets) {
    total += bucket.count;
    if (bucket.count > max) max = bucket.count;
  }
  return { max, share: total === 0 ? 0 : max / total };
}

/**
 * One line per bucket: `  1000-1250 ms |#######        63`. Bars are scaled
 * to `barWidth` characters for the largest bucket.
 */
export function asciiHistogram(buckets, { barWidth = 50, unit = 'ms' } = {}) {
  const { max } = maxBucket(buckets);
  const label = (bucket) => `${bucket.from}-${bucket.to} ${unit}`;
  const labelWidth = Math.max(0, ...buckets.map((bucket) => label(bucket).length));
  return buckets
    .map((bucket) => {
      const bar = max === 0 ? '' : '#'.repeat(Math.round((bucket.count / max) * barWidth));
      return `${label(bucket).padStart(labelWidth)} |${bar.padEnd(barWidth)} ${bucket.count}`;
    })
    .join('\n');
}
