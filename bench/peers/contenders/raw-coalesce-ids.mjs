// Contender `raw-coalesce-ids`: `raw-coalesce` writing the frame ssecast
// writes (an `id:` line of the same length and an `event:` line), so that the
// two coalescing servers can be compared byte for byte. The ids are a counter,
// not a resumable history: this is still no library.
import { startCoalescing } from './raw-coalesce.mjs';

/** Same shape and length as ssecast's ids: `<epoch>.<seq>`. */
const EPOCH = 'mwu3ltellw97aj';

export function start() {
  let seq = 0;
  return startCoalescing((data) => `id: ${EPOCH}.${++seq}\nevent: tick\ndata: ${data}\n\n`);
}
