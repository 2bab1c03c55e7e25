// Router: maps a method and a path pattern such as `/users/{id}` to a handler, like the Rust
// SDK's router. Pure JavaScript.
//
// Routes are tried in the order they were added; the first whose pattern matches the path and
// whose method matches wins. A path some route matches with another method is a 405 with an
// `allow` header; a path no route matches is a 404. A single trailing slash is ignored. Errors
// are the contract's JSON body; anything thrown that is not an ApiError is a 500.

import { ApiError, apiErrorOf } from './errors.js';
import { Response } from './http.js';

function split(path) {
  const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  return (trimmed.startsWith('/') ? trimmed.slice(1) : trimmed).split('/');
}

function decode(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw ApiError.badRequest(`bad percent-encoding in ${segment}`);
  }
}

function matchSegments(segments, parts) {
  if (segments.length !== parts.length) return null;
  const params = {};
  for (let i = 0; i < parts.length; i++) {
    const seg = segments[i];
    if (seg.param === undefined) {
      if (seg.literal !== parts[i]) return null;
    } else {
      if (parts[i] === '') return null;
      params[seg.param] = decode(parts[i]);
    }
  }
  return params;
}

export class Router {
  constructor() {
    this.routes = [];
  }

  route(method, pattern, handler) {
    const segments = split(pattern).map((part) =>
      part.length > 2 && part.startsWith('{') && part.endsWith('}')
        ? { param: part.slice(1, -1) }
        : { literal: part },
    );
    this.routes.push({ method: method.toUpperCase(), segments, handler });
    return this;
  }

  get(pattern, handler) { return this.route('GET', pattern, handler); }
  post(pattern, handler) { return this.route('POST', pattern, handler); }
  put(pattern, handler) { return this.route('PUT', pattern, handler); }
  patch(pattern, handler) { return this.route('PATCH', pattern, handler); }
  delete(pattern, handler) { return this.route('DELETE', pattern, handler); }

  /** `{handler, params}` for the matching route, or throws the 404/405 ApiError. */
  match(method, path) {
    const parts = split(path);
    const allowed = [];
    for (const route of this.routes) {
      const params = matchSegments(route.segments, parts);
      if (params === null) continue;
      if (route.method === method.toUpperCase()) return { handler: route.handler, params };
      if (!allowed.includes(route.method)) allowed.push(route.method);
    }
    if (allowed.length > 0) {
      const err = ApiError.methodNotAllowed(`${method} is not allowed on ${path}`);
      err.allow = allowed.join(', ');
      throw err;
    }
    throw ApiError.notFound(`no route for ${method} ${path}`);
  }

  /** The response to `request`: the handler's (a plain value becomes a 200 JSON body), or
   * the contract's error JSON. */
  handle(request) {
    try {
      const { handler, params } = this.match(request.method, request.path);
      request.params = params;
      const result = handler(request);
      return result instanceof Response ? result : Response.json(result);
    } catch (thrown) {
      const err = apiErrorOf(thrown);
      const response = Response.error(err);
      if (err.allow) response.headers.push(['allow', err.allow]);
      return response;
    }
  }
}
