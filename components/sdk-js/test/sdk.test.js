// The SDK's pure parts: router, JSON requests and responses, the contract's error body, store
// errors' statuses, SQL values and rows. No bindings: run with `node --test test/`.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  ApiError,
  Request,
  Response,
  Router,
  StoreError,
  Subscriptions,
  apiErrorOf,
  eventJson,
  fromValue,
  rowObjects,
  storeErrorOf,
  toValue,
} from '../src/index.js';

const enc = new TextEncoder();
const json = (response) => JSON.parse(response.text());

describe('router', () => {
  const router = new Router()
    .get('/items/{id}', (req) => Response.ok({ id: req.param('id') }))
    .post('/items', (req) => Response.created(req.json()))
    .get('/items/{id}/parts/{part}', (req) => ({ ...req.params }));

  it('matches params and percent-decodes them', () => {
    const r = router.handle(new Request('GET', '/items/a%20b'));
    assert.equal(r.status, 200);
    assert.deepEqual(json(r), { id: 'a b' });
    assert.deepEqual(json(router.handle(new Request('GET', '/items/1/parts/2'))), { id: '1', part: '2' });
  });

  it('ignores a trailing slash but an empty param is no match', () => {
    assert.equal(router.handle(new Request('GET', '/items/7/')).status, 200);
    assert.equal(router.handle(new Request('GET', '/items/')).status, 405);
  });

  it('answers an unknown path with 404 and the contract body', () => {
    const r = router.handle(new Request('GET', '/nope/1'));
    assert.equal(r.status, 404);
    assert.equal(r.header('content-type'), 'application/json');
    assert.equal(r.text(), '{"error":{"code":"not_found","message":"no route for GET /nope/1"}}');
  });

  it('answers a wrong method with 405 and allow', () => {
    const r = router.handle(new Request('DELETE', '/items/1'));
    assert.equal(r.status, 405);
    assert.equal(json(r).error.code, 'method_not_allowed');
    assert.equal(r.header('allow'), 'GET');
  });

  it('answers a bad JSON body with 400 and round-trips a good one', () => {
    const bad = router.handle(new Request('POST', '/items', [], enc.encode('{nope')));
    assert.equal(bad.status, 400);
    assert.equal(json(bad).error.code, 'bad_request');
    const good = router.handle(new Request('POST', '/items', [], enc.encode('{"name":"é"}')));
    assert.equal(good.status, 201);
    assert.deepEqual(json(good), { name: 'é' });
  });

  it('turns an unexpected throw into 500 internal', () => {
    const r = new Router().get('/boom', () => { throw new TypeError('bad'); }).handle(new Request('GET', '/boom'));
    assert.equal(r.status, 500);
    assert.deepEqual(json(r), { error: { code: 'internal', message: 'TypeError: bad' } });
  });
});

describe('request', () => {
  it('splits path and query and lower-cases headers', () => {
    const req = new Request('get', '/n?userId=u%201&x=1&x=2&empty=', [['Content-Type', enc.encode('text/plain')]]);
    assert.equal(req.method, 'GET');
    assert.equal(req.path, '/n');
    assert.deepEqual(req.query, { userId: 'u 1', x: '1', empty: '' });
    assert.equal(req.headers['content-type'], 'text/plain');
  });
});

describe('errors', () => {
  it('has exactly the contract body', () => {
    const err = ApiError.notFound('no user "u1"');
    assert.equal(err.body(), '{"error":{"code":"not_found","message":"no user \\"u1\\""}}');
    const r = Response.error(err);
    assert.equal(r.status, 404);
    assert.equal(r.header('Content-Type'), 'application/json');
  });

  it('maps store errors to statuses as the Rust SDK does', () => {
    const cases = [
      ['constraint-violation', 409, 'conflict'],
      ['access-denied', 403, 'forbidden'],
      ['unavailable', 503, 'unavailable'],
      ['limit-exceeded', 503, 'unavailable'],
      ['bad-query', 500, 'internal'],
      ['invalid-handle', 500, 'internal'],
      ['other', 500, 'internal'],
    ];
    for (const [kind, status, code] of cases) {
      const err = apiErrorOf(new StoreError(kind, 'x'));
      assert.deepEqual([err.status, err.code], [status, code], kind);
    }
  });

  it('reads the WIT error variant a binding throws', () => {
    const thrown = Object.assign(new Error('see payload'), { payload: { tag: 'access-denied', val: 'store `x`' } });
    const err = storeErrorOf(thrown);
    assert.ok(err instanceof StoreError);
    assert.deepEqual([err.kind, err.detail], ['access-denied', 'store `x`']);
  });
});

describe('rows', () => {
  it('binds JavaScript values as WIT values', () => {
    assert.deepEqual(toValue(null), { tag: 'null' });
    assert.deepEqual(toValue(true), { tag: 'integer', val: 1n });
    assert.deepEqual(toValue(7), { tag: 'integer', val: 7n });
    assert.deepEqual(toValue(1.5), { tag: 'real', val: 1.5 });
    assert.deepEqual(toValue('t'), { tag: 'text', val: 't' });
    assert.throws(() => toValue({}), TypeError);
  });

  it('turns row sets into objects, small integers into numbers', () => {
    const rows = rowObjects({
      columns: ['id', 'n', 'big', 'gone'],
      rows: [[{ tag: 'text', val: 'a' }, { tag: 'integer', val: 2n }, { tag: 'integer', val: 2n ** 60n }, { tag: 'null' }]],
    });
    assert.deepEqual(rows, [{ id: 'a', n: 2, big: 2n ** 60n, gone: null }]);
    assert.equal(fromValue({ tag: 'real', val: 0.5 }), 0.5);
  });
});

describe('subscriptions', () => {
  it('takes the first match, onAny the rest', () => {
    const subs = new Subscriptions().on('orders', 'OrderApproved', 'approved').onAny('rest');
    assert.equal(subs.handlerFor('orders', 'OrderApproved'), 'approved');
    assert.equal(subs.handlerFor('users', 'UserUpdated'), 'rest');
    assert.equal(new Subscriptions().on('a', 'b', 'h').handlerFor('a', 'c'), undefined);
  });

  it('parses event data and names the event when it is bad', () => {
    const event = { id: 'evt_1', source: 'orders', topic: 'T', data: enc.encode('{') };
    assert.throws(() => eventJson(event), /orders\/T event evt_1/);
    assert.deepEqual(eventJson({ ...event, data: enc.encode('{"a":1}') }), { a: 1 });
  });
});
