// Subscriptions: a service's event handlers by source and topic, as the Rust SDK's
// `Subscriptions::new().on(source, topic, handler)`. Pure JavaScript.
//
// The host calls the handler matching each delivered event with a Tx that already holds the
// event's inbox record; its SQL writes commit with that record when it returns, so an event
// never applies twice. A throw discards them and the host retries later.

export class Subscriptions {
  constructor() {
    this.handlers = [];
  }

  /** Handles `topic` events published by the service `source`. */
  on(source, topic, handler) {
    this.handlers.push({ source, topic, handler });
    return this;
  }

  /** Handles every event no earlier subscription took (belongs last). */
  onAny(handler) {
    this.handlers.push({ handler });
    return this;
  }

  /** The first matching handler, or undefined (a mismatch with the manifest). */
  handlerFor(source, topic) {
    return this.handlers.find(
      (h) => h.source === undefined || (h.source === source && h.topic === topic),
    )?.handler;
  }
}

/** The event's data parsed as JSON; data that does not parse throws naming the event. */
export function eventJson(event) {
  try {
    return JSON.parse(new TextDecoder().decode(event.data));
  } catch (err) {
    throw new Error(`${event.source}/${event.topic} event ${event.id}: invalid JSON data: ${err.message}`);
  }
}
