// silo-sdk: write a silo service in JavaScript — routes, JSON, SQL rows, kv and events.
//
// The pure parts (importable anywhere, tested with `node --test`) are here; the parts over
// the WIT imports componentize-js provides inside a component (Db, Tx, Kv, publish,
// exportService) are in `component.js`.

export { ApiError, StoreError, apiErrorOf, storeErrorOf } from './errors.js';
export { Request, Response, JSON_TYPE } from './http.js';
export { Router } from './router.js';
export { toValue, fromValue, rowObjects } from './rows.js';
export { Subscriptions, eventJson } from './subscriptions.js';
