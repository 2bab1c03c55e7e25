// Request and Response: what a route handler takes and returns. Pure JavaScript.
// The wasi:http glue (component.js) builds a Request from the incoming request and writes a
// Response back; handlers never see wasi:http resources.

import { ApiError } from './errors.js';

export const JSON_TYPE = 'application/json';
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** One HTTP request: `method` (upper case), `path` (without the query), `query` (first
 * value of each parameter), `headers` (lower-case names to strings), `body` (Uint8Array)
 * and `params` (the route's `{name}` segments, decoded). */
export class Request {
  constructor(method, pathWithQuery, headers = [], body = new Uint8Array()) {
    this.method = method.toUpperCase();
    const q = pathWithQuery.indexOf('?');
    this.path = (q < 0 ? pathWithQuery : pathWithQuery.slice(0, q)) || '/';
    this.query = {};
    for (const [name, value] of new URLSearchParams(q < 0 ? '' : pathWithQuery.slice(q + 1))) {
      if (!(name in this.query)) this.query[name] = value;
    }
    this.headers = {};
    for (const [name, value] of headers) {
      this.headers[name.toLowerCase()] = typeof value === 'string' ? value : decoder.decode(value);
    }
    this.body = body;
    this.params = {};
  }

  /** The route parameter `name`; a route without it is a bug: 500. */
  param(name) {
    if (!(name in this.params)) throw ApiError.internal(`the route has no parameter ${name}`);
    return this.params[name];
  }

  /** The body parsed as JSON; a body that does not parse is a 400 `bad_request`. */
  json() {
    try {
      return JSON.parse(decoder.decode(this.body) || 'null');
    } catch (err) {
      throw ApiError.badRequest(`the body is not valid JSON: ${err.message}`);
    }
  }
}

/** An HTTP response: `status`, `headers` (`[name, value]` pairs) and `body` (Uint8Array). */
export class Response {
  constructor(status = 200, body = new Uint8Array(), headers = []) {
    this.status = status;
    this.body = typeof body === 'string' ? encoder.encode(body) : body;
    this.headers = [...headers];
  }

  /** `value` as a JSON body with `content-type: application/json`. */
  static json(value, status = 200) {
    return new Response(status, JSON.stringify(value), [['content-type', JSON_TYPE]]);
  }

  static ok(value) { return Response.json(value, 200); }
  static created(value) { return Response.json(value, 201); }

  /** The contract's error response for an ApiError. */
  static error(err) {
    return new Response(err.status, err.body(), [['content-type', JSON_TYPE]]);
  }

  header(name) {
    const found = this.headers.find(([key]) => key.toLowerCase() === name.toLowerCase());
    return found?.[1];
  }

  text() { return decoder.decode(this.body); }
}
