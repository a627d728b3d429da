// The graphql-transport-ws protocol (the `graphql-ws` library's) over one websocket to
// /graphql on this host, kept open: a lost connection is opened again with backoff, and every
// live subscription is sent again once the server acknowledges the new connection (each one
// asks for its variables then, so that a stream can resume from where it stopped).

import { reconnectDelay } from "./backoff.js";

export const PROTOCOL = "graphql-transport-ws";
/** The server's close code for a refused connection_init (bad token, too many connections). */
export const REFUSED = 4403;
const ACK_TIMEOUT_MS = 10_000;
const PING_EVERY_MS = 15_000;
const PONG_TIMEOUT_MS = 6_000;
const CLIENT_GAVE_UP = 4000;

export function graphqlSocketUrl(location = window.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/graphql`;
}

/**
 * onState({ phase, attempt, retryInMs, code, reason }) with phase one of "connecting", "open",
 * "reconnecting", "refused" (closed with 4403; reconnecting goes on unless stop() is called).
 */
export class LiveConnection {
  constructor({ url, token, onState = () => {} }) {
    this.url = url;
    this.token = token;
    this.onState = onState;
    this.socket = null;
    this.acknowledged = false;
    this.attempt = 0;
    this.stopped = true;
    this.nextId = 1;
    this.subscriptions = new Map();
    this.timers = new Set();
    this.pongTimer = null;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.#open();
  }

  stop() {
    this.stopped = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.subscriptions.clear();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      this.#detach(socket);
      socket.close(1000, "signed out");
    }
  }

  /**
   * Starts a subscription, now or as soon as the connection is acknowledged, and again after
   * each reconnect until it ends. `variables` may be a function, asked each time it is sent.
   * Handlers: next(data), error(errors) (the stream is over), complete().
   */
  subscribe({ query, variables = {}, next, error = () => {}, complete = () => {} }) {
    const id = String(this.nextId++);
    const subscription = { id, query, variables, next, error, complete };
    this.subscriptions.set(id, subscription);
    if (this.acknowledged) this.#sendSubscribe(subscription);
    return {
      unsubscribe: () => {
        if (!this.subscriptions.delete(id)) return;
        if (this.acknowledged) this.#send({ type: "complete", id });
      },
    };
  }

  #later(ms, work) {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      work();
    }, ms);
    this.timers.add(timer);
    return timer;
  }

  #cancel(timer) {
    if (timer === null) return;
    clearTimeout(timer);
    this.timers.delete(timer);
  }

  #open() {
    this.acknowledged = false;
    this.onState({ phase: "connecting", attempt: this.attempt });
    let socket;
    try {
      socket = new WebSocket(this.url, PROTOCOL);
    } catch (error) {
      this.#reconnect(0, String(error));
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.#send({ type: "connection_init", payload: { Authorization: `Bearer ${this.token}` } });
    };
    socket.onmessage = (message) => this.#receive(socket, message.data);
    socket.onclose = (event) => this.#closed(socket, event.code, event.reason);
    socket.onerror = () => {}; // a close event follows, and says more
    const ackTimer = this.#later(ACK_TIMEOUT_MS, () => {
      if (this.socket === socket && !this.acknowledged) {
        this.#drop(socket, "the server did not acknowledge the connection");
      }
    });
    socket.addEventListener("close", () => this.#cancel(ackTimer), { once: true });
  }

  #send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  #sendSubscribe(subscription) {
    const { variables: given } = subscription;
    const variables = typeof given === "function" ? given() : given;
    this.#send({
      type: "subscribe",
      id: subscription.id,
      payload: { query: subscription.query, variables },
    });
  }

  #receive(socket, raw) {
    if (socket !== this.socket) return;
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      this.#drop(socket, "the server sent a message that is not JSON");
      return;
    }
    const subscription = message.id ? this.subscriptions.get(message.id) : undefined;
    switch (message.type) {
      case "connection_ack":
        this.acknowledged = true;
        this.attempt = 0;
        for (const each of this.subscriptions.values()) this.#sendSubscribe(each);
        this.onState({ phase: "open" }); // after the subscriptions: a read it triggers follows them
        this.#schedulePing(socket);
        break;
      case "ping":
        this.#send({ type: "pong" });
        break;
      case "pong":
        this.#cancel(this.pongTimer);
        this.pongTimer = null;
        break;
      case "next": {
        if (!subscription) break;
        const payload = message.payload || {};
        if (Array.isArray(payload.errors) && payload.errors.length && !payload.data) {
          this.subscriptions.delete(subscription.id); // the server completes it next
          subscription.error(payload.errors);
        } else subscription.next(payload.data);
        break;
      }
      case "error":
        if (!subscription) break;
        this.subscriptions.delete(subscription.id);
        subscription.error(Array.isArray(message.payload) ? message.payload : [message.payload]);
        break;
      case "complete":
        if (!subscription) break;
        this.subscriptions.delete(subscription.id);
        subscription.complete();
        break;
      default:
        break;
    }
  }

  #schedulePing(socket) {
    this.#later(PING_EVERY_MS, () => {
      if (socket !== this.socket || !this.acknowledged) return;
      this.#send({ type: "ping" });
      this.pongTimer = this.#later(PONG_TIMEOUT_MS, () => {
        if (socket === this.socket) this.#drop(socket, "the server stopped answering pings");
      });
      this.#schedulePing(socket);
    });
  }

  #detach(socket) {
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
  }

  /** Gives up on a socket that stopped answering: its close handshake may never finish. */
  #drop(socket, reason) {
    this.#detach(socket);
    try {
      socket.close(CLIENT_GAVE_UP, reason.slice(0, 120));
    } catch {
      // already closing
    }
    this.#closed(socket, CLIENT_GAVE_UP, reason);
  }

  #closed(socket, code, reason) {
    if (socket !== this.socket) return;
    this.socket = null;
    this.acknowledged = false;
    this.#cancel(this.pongTimer);
    this.pongTimer = null;
    if (this.stopped) return;
    if (code === REFUSED) {
      this.onState({ phase: "refused", code, reason });
      if (this.stopped) return; // the refusal made the page sign out
    }
    this.#reconnect(code, reason);
  }

  #reconnect(code, reason) {
    const retryInMs = reconnectDelay(this.attempt);
    this.attempt += 1;
    this.onState({ phase: "reconnecting", attempt: this.attempt, retryInMs, code, reason });
    this.#later(retryInMs, () => {
      if (!this.stopped) this.#open();
    });
  }
}
