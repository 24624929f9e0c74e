// How the 4096 shard tags (two base64url characters, `{T}` in every key) fall on the 16384 Redis Cluster slots and
// on N masters holding contiguous, equal slot ranges (what `redis-cli --cluster create` assigns):
//   node bench/capacity/slots.mjs [N ...]        (default 3 6 12 24 48)
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
export const SLOTS = 16384

/** CRC16-CCITT (XMODEM), the function Redis Cluster hashes keys with. */
export function crc16 (text) {
  let crc = 0
  for (const byte of Buffer.from(text)) {
    crc ^= byte << 8
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc
}

/** Every shard tag. */
export function tags () {
  const all = []
  for (const first of ALPHABET) for (const second of ALPHABET) all.push(first + second)
  return all
}

/** The slot of a key whose hash tag is `tag`. */
export const slotOf = (tag) => crc16(tag) % SLOTS

/** The master owning `slot` when `masters` masters hold contiguous ranges, the first ones one slot more. */
export function masterOf (slot, masters) {
  const base = Math.floor(SLOTS / masters)
  const extra = SLOTS % masters
  const boundary = extra * (base + 1)
  return slot < boundary ? Math.floor(slot / (base + 1)) : extra + Math.floor((slot - boundary) / base)
}

/** Tags per master for `masters` masters: min, max, and max over the mean. */
export function spread (masters) {
  const perMaster = new Array(masters).fill(0)
  for (const tag of tags()) perMaster[masterOf(slotOf(tag), masters)]++
  const mean = 4096 / masters
  const min = Math.min(...perMaster)
  const max = Math.max(...perMaster)
  return { masters, min, max, mean, maxOverMean: max / mean, minOverMean: min / mean, perMaster }
}

/** Distinct slots the tags use (two tags on one slot are one unit of resharding). */
export function distinctSlots () {
  return new Set(tags().map(slotOf)).size
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const counts = process.argv.slice(2).map(Number)
  console.log(`4096 tags on ${distinctSlots()} distinct slots of ${SLOTS}`)
  for (const masters of counts.length > 0 ? counts : [3, 6, 12, 24, 48]) {
    const { min, max, mean, maxOverMean, minOverMean } = spread(masters)
    console.log(`${String(masters).padStart(3)} masters: ${min} to ${max} tags per master (mean ${mean.toFixed(1)}; ${(minOverMean * 100).toFixed(1)}% to ${(maxOverMean * 100).toFixed(1)}% of it)`)
  }
}
