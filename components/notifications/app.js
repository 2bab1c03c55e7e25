// notifications: what happened to a user's orders and profile, in JavaScript.
//
// Subscribes to orders' OrderApproved and OrderRejected and users' UserUpdated, and keeps one
// notification per event in its own key-value store. `GET /notifications?userId=ID` lists a
// user's notifications, newest first. Built with componentize-js against silo's WIT (see the
// Makefile's `js` target).
//
// The kv store is not part of the event's transaction, so a redelivered event must not add a
// second notification: the key is derived from the event alone (user, publish time, event
// id), and a redelivery writes the same key again.

import { ApiError, Response, Router, Subscriptions, eventJson } from '../sdk-js/src/index.js';
import { Kv, exportService } from '../sdk-js/src/component.js';

const STORE = 'notifications';
const MAX_LISTED = 1000;
// Milliseconds since the epoch, subtracted from this, sort newest first in byte order.
const LATEST = 9_999_999_999_999;

function keyPrefix(userId) {
  return `user/${encodeURIComponent(userId)}/`;
}

/** Stores the notification for `event` (idempotent: the key depends only on the event). */
function notify(event, userId, kind, text) {
  const id = `ntf_${event.id.replace(/^evt_/, '')}`;
  const time = event.time;
  const order = String(LATEST - Date.parse(time)).padStart(13, '0');
  Kv.open(STORE).setJson(`${keyPrefix(userId)}${order}/${id}`, { id, userId, kind, text, time });
}

function requireString(data, field, event) {
  const value = data[field];
  if (typeof value !== 'string' || value === '') {
    throw ApiError.badRequest(`${event.topic} ${event.id} lacks ${field}`);
  }
  return value;
}

function orderApproved(event) {
  const order = eventJson(event);
  const userId = requireString(order, 'userId', event);
  notify(
    event,
    userId,
    'order-approved',
    `Your order ${order.orderId} of ${order.quantity} × ${order.productId} was approved (${order.amount}).`,
  );
}

function orderRejected(event) {
  const order = eventJson(event);
  const userId = requireString(order, 'userId', event);
  notify(
    event,
    userId,
    'order-rejected',
    `Your order ${order.orderId} of ${order.quantity} × ${order.productId} was rejected: ${order.reason}.`,
  );
}

function userUpdated(event) {
  const user = eventJson(event);
  const userId = typeof user.id === 'string' && user.id !== '' ? user.id : event.key;
  notify(event, userId, 'profile-updated', 'Your profile was updated.');
}

function list(req) {
  const userId = req.query.userId;
  if (userId === undefined || userId === '') {
    throw ApiError.badRequest('the query parameter userId is required');
  }
  const kv = Kv.open(STORE);
  const notifications = [];
  for (const key of kv.listKeys(keyPrefix(userId), MAX_LISTED)) {
    const value = kv.getJson(key);
    if (value !== null) notifications.push(value);
  }
  return Response.ok({ notifications });
}

const Notifications = {
  router() {
    return new Router().get('/notifications', list);
  },
  subscriptions() {
    return new Subscriptions()
      .on('orders', 'OrderApproved', orderApproved)
      .on('orders', 'OrderRejected', orderRejected)
      .on('users', 'UserUpdated', userUpdated);
  },
};

export const { incomingHandler, migrations, eventHandler, commandHandler, sagaHandler } =
  exportService(Notifications);
