// SQL values and rows: JavaScript values to the WIT `types.value` cases (`{tag, val}`) and
// row sets to plain objects. Pure JavaScript.

/** The WIT value for a JavaScript value: null/undefined → null, boolean and integral
 * numbers and bigints → integer (s64, a BigInt), other numbers → real, strings → text,
 * Uint8Array → blob. Anything else throws TypeError. */
export function toValue(value) {
  if (value === null || value === undefined) return { tag: 'null' };
  if (typeof value === 'boolean') return { tag: 'integer', val: value ? 1n : 0n };
  if (typeof value === 'bigint') return { tag: 'integer', val: value };
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { tag: 'integer', val: BigInt(value) } : { tag: 'real', val: value };
  }
  if (typeof value === 'string') return { tag: 'text', val: value };
  if (value instanceof Uint8Array) return { tag: 'blob', val: value };
  throw new TypeError(`cannot bind a ${typeof value} as an SQL value`);
}

/** A WIT value as a JavaScript value; integers within ±2^53 become numbers, larger ones
 * stay BigInt. */
export function fromValue(value) {
  if (value.tag === 'null') return null;
  if (typeof value.val === 'bigint' && Number.isSafeInteger(Number(value.val))) return Number(value.val);
  return value.val;
}

/** Each row of a WIT `row-set` as an object of column name to value. */
export function rowObjects(rowSet) {
  return rowSet.rows.map((row) => {
    const obj = {};
    rowSet.columns.forEach((column, i) => {
      obj[column] = fromValue(row[i]);
    });
    return obj;
  });
}
