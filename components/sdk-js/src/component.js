// The parts of the SDK over silo's WIT imports, which componentize-js links inside a
// component (`silo:service/sql`, `kv`, `events`, and wasi:http for the incoming request):
// Db, Tx, Kv, publish and exportService. componentize-js generates the bindings from `wit/`
// at build time; nothing else in the SDK touches them.

import { Database, Transaction } from 'silo:service/sql@0.1.0';
import { Bucket } from 'silo:service/kv@0.1.0';
import { publish as witPublish } from 'silo:service/events@0.1.0';
import {
  Fields,
  IncomingBody,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from 'wasi:http/types@0.2.12';

import { ApiError, storeErrorOf } from './errors.js';
import { JSON_TYPE, Request, Response } from './http.js';
import { rowObjects, toValue } from './rows.js';
import { Subscriptions } from './subscriptions.js';

export * from './index.js';

const encoder = new TextEncoder();
const MAX_BODY_BYTES = 1024 * 1024;
const WRITE_CHUNK = 4096;

/** Calls a binding, turning its thrown WIT error into a StoreError. */
function call(fn) {
  try {
    return fn();
  } catch (err) {
    throw storeErrorOf(err);
  }
}

class Statements {
  /** Rows as objects. */
  query(sql, params = []) {
    return rowObjects(call(() => this.raw.query(sql, params.map(toValue))));
  }

  /** The first row, or null. */
  queryOne(sql, params = []) {
    return this.query(sql, params)[0] ?? null;
  }

  /** Runs a statement that changes data; returns the number of rows affected. */
  execute(sql, params = []) {
    return Number(call(() => this.raw.execute(sql, params.map(toValue))).rowsAffected);
  }
}

/** An open transaction: the one an event handler is lent, or the one Db.transaction made. */
export class Tx extends Statements {
  constructor(raw) {
    super();
    this.raw = raw;
  }

  /** Publishes `value` as JSON on `topic` with `key` in this transaction (the outbox):
   * delivered if and only if it commits. Returns the event id. */
  publish(topic, key, value) {
    return publish(this, topic, key, value);
  }
}

/** One of the service's SQL stores, as the manifest declares it. */
export class Db extends Statements {
  constructor(raw) {
    super();
    this.raw = raw;
  }

  static open(name) {
    return new Db(call(() => Database.open(name)));
  }

  backend() {
    return this.raw.backend();
  }

  /** Runs `fn(tx)` in a transaction: commits when it returns (and returns its result), rolls
   * back when it throws (and throws again). */
  transaction(fn) {
    const raw = call(() => this.raw.begin());
    let result;
    try {
      result = fn(new Tx(raw));
    } catch (err) {
      try {
        Transaction.rollback(raw);
      } catch {
        // the original failure is the one to report
      }
      throw err;
    }
    call(() => Transaction.commit(raw));
    return result;
  }
}

/** One of the service's key-value stores: bytes or JSON under string keys. */
export class Kv {
  constructor(raw) {
    this.raw = raw;
  }

  static open(name) {
    return new Kv(call(() => Bucket.open(name)));
  }

  get(key) {
    return call(() => this.raw.get(key)) ?? null;
  }

  /** Sets `key`; with `ttlMs`, it expires that many milliseconds from now. */
  set(key, value, ttlMs) {
    const bytes = typeof value === 'string' ? encoder.encode(value) : value;
    call(() => this.raw.set(key, bytes, ttlMs === undefined ? undefined : BigInt(ttlMs)));
  }

  getJson(key) {
    const bytes = this.get(key);
    return bytes === null ? null : JSON.parse(new TextDecoder().decode(bytes));
  }

  setJson(key, value, ttlMs) {
    this.set(key, JSON.stringify(value), ttlMs);
  }

  delete(key) {
    return call(() => this.raw.delete(key));
  }

  /** The keys starting with `prefix`, in byte order, at most `limit`. */
  listKeys(prefix, limit = 1000) {
    return call(() => this.raw.listKeys(prefix, limit));
  }
}

/** Publishes `value` as JSON on `topic` with `key` in `tx`. Returns the event id. */
export function publish(tx, topic, key, value) {
  return publishRaw(tx, topic, key, JSON_TYPE, encoder.encode(JSON.stringify(value)));
}

export function publishRaw(tx, topic, key, contentType, data) {
  return call(() => witPublish(tx.raw, topic, key, contentType, data));
}

function readRequest(incoming) {
  const method = incoming.method();
  const name = method.tag === 'other' ? method.val : method.tag;
  const fields = incoming.headers();
  const headers = fields.entries();
  // A child of the request: dropped here rather than whenever the collector runs.
  fields[Symbol.dispose]();
  const body = incoming.consume();
  const stream = body.stream();
  const chunks = [];
  let size = 0;
  try {
    for (;;) {
      let chunk;
      try {
        chunk = stream.blockingRead(65536n);
      } catch (err) {
        if (err?.payload?.tag === 'closed') break;
        throw ApiError.badRequest('reading the request body failed');
      }
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        throw ApiError.payloadTooLarge(`the request body is larger than ${MAX_BODY_BYTES} bytes`);
      }
      chunks.push(chunk);
    }
  } finally {
    // The stream is a child of the body: it goes first.
    stream[Symbol.dispose]();
    IncomingBody.finish(body);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return new Request(name, incoming.pathWithQuery() ?? '/', headers, bytes);
}

function writeResponse(response, out) {
  const headers = response.headers.map(([k, v]) => [k, typeof v === 'string' ? encoder.encode(v) : v]);
  if (response.header('content-length') === undefined) {
    headers.push(['content-length', encoder.encode(String(response.body.length))]);
  }
  let fields;
  try {
    fields = Fields.fromList(headers);
  } catch {
    // A header the host refuses is a bug in the service; answer without its headers.
    fields = Fields.fromList([['content-length', encoder.encode(String(response.body.length))]]);
  }
  const outgoing = new OutgoingResponse(fields);
  try {
    outgoing.setStatusCode(response.status);
  } catch {
    outgoing.setStatusCode(500);
  }
  const body = outgoing.body();
  ResponseOutparam.set(out, { tag: 'ok', val: outgoing });
  const stream = body.write();
  try {
    for (let at = 0; at < response.body.length; at += WRITE_CHUNK) {
      stream.blockingWriteAndFlush(response.body.subarray(at, at + WRITE_CHUNK));
    }
  } catch {
    // the client went away; nothing is left to tell it
  } finally {
    stream[Symbol.dispose]();
  }
  OutgoingBody.finish(body, undefined);
}

function failure(err) {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** The exports componentize-js looks for, for `service` (an object with `router()` and,
 * optionally, `migrations()` → `[{store, version, description, statements}]` and
 * `subscriptions()` → Subscriptions), as the Rust SDK's `service!` macro:
 * `export const { incomingHandler, migrations, eventHandler, commandHandler, sagaHandler }
 *    = exportService(MyService);` */
export function exportService(service) {
  return {
    incomingHandler: {
      handle(request, responseOut) {
        let response;
        try {
          response = service.router().handle(readRequest(request));
        } catch (err) {
          response = Response.error(err instanceof ApiError ? err : ApiError.internal(failure(err)));
        }
        writeResponse(response, responseOut);
      },
    },
    migrations: {
      migrations() {
        return service.migrations?.() ?? [];
      },
    },
    eventHandler: {
      handle(event, tx) {
        const subs = service.subscriptions?.() ?? new Subscriptions();
        const handler = subs.handlerFor(event.source, event.topic);
        if (!handler) throw `no handler for ${event.source}/${event.topic}`;
        try {
          handler(event, new Tx(tx));
        } catch (err) {
          // the host retries the event later
          throw failure(err);
        }
      },
    },
    commandHandler: {
      handle(command) {
        throw `no handler for command ${command.name}`;
      },
    },
    sagaHandler: {
      finished() {},
    },
  };
}
