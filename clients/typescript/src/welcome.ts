// A live subscription (PROTOCOL §8, protocol version 2): subscribe to the prefixes, then to
// `instance.welcome/<token>`, and wait for the one welcome carrying that token. Retries with a
// fresh socket when a welcome is late (libzmq handshake races). Owns the SUB until handed over.

import { randomUUID } from "node:crypto";

import type { Subscriber } from "zeromq";

import { NoWelcomeError } from "./errors.js";
import type { EventEnvelope, WelcomeEnvelope } from "./generated/types.js";
import { subscriberFor } from "./sockets.js";
import { WELCOME_TOPIC } from "./topics.js";

/** How long one socket waits for its welcome before a fresh one is tried. */
export const WELCOME_ATTEMPT_MS = 1000;

export interface LiveSubscriber {
  socket: Subscriber;
  /** This socket's own welcome: every matching event numbered above `payload.last_seq` follows. */
  welcome: WelcomeEnvelope;
  token: string;
}

/** A fresh welcome token: 32 hex digits (the server takes up to 128 bytes). */
export function newWelcomeToken(): string {
  return randomUUID().replaceAll("-", "");
}

/** Whether an envelope is a welcome (anyone's): welcomes are not numbered events. */
export function isWelcome(env: { topic?: unknown }): boolean {
  return env.topic === WELCOME_TOPIC;
}

/** Whether `env` is the welcome for `token`. A subscriber to `""` or `instance.` also gets other
 * clients' welcomes: those carry other tokens. */
export function isOwnWelcome(env: EventEnvelope | WelcomeEnvelope, token: string): env is WelcomeEnvelope {
  return isWelcome(env) && (env.payload as { token?: unknown }).token === token;
}

/** The `last_seq` of a welcome: every matching event numbered above it follows. */
export function welcomeLastSeq(env: WelcomeEnvelope): number {
  return typeof env.payload.last_seq === "number" ? env.payload.last_seq : 0;
}

/** Parses a two-frame PUB message; undefined when it is not one. */
export function parseEnvelope(frames: Buffer[]): EventEnvelope | undefined {
  if (frames.length !== 2) return undefined;
  try {
    const env = JSON.parse(frames[1].toString("utf8")) as EventEnvelope;
    return env && typeof env === "object" && typeof env.topic === "string" ? env : undefined;
  } catch {
    return undefined;
  }
}

/** Opens a SUB on `endpoint` subscribed to `prefixes` and waits until its welcome arrives, at
 * most `timeoutMs` in all. What arrives before the welcome was published before it and is
 * dropped. Throws `NoWelcomeError` when no attempt is welcomed in time. */
export async function openLiveSubscriber(
  endpoint: string,
  prefixes: readonly string[],
  opts: { secret?: string; timeoutMs: number; attemptMs?: number },
): Promise<LiveSubscriber> {
  const deadline = Date.now() + opts.timeoutMs;
  const attemptMs = opts.attemptMs ?? WELCOME_ATTEMPT_MS;
  for (;;) {
    const socket = subscriberFor(endpoint, opts.secret);
    for (const p of prefixes) socket.subscribe(p);
    const token = newWelcomeToken();
    socket.subscribe(`${WELCOME_TOPIC}/${token}`); // last: its welcome vouches for the ones before
    socket.connect(endpoint);
    const until = Math.min(deadline, Date.now() + attemptMs);
    try {
      for (let left = until - Date.now(); left > 0; left = until - Date.now()) {
        socket.receiveTimeout = left;
        const env = parseEnvelope(await socket.receive());
        if (env && isOwnWelcome(env, token)) {
          socket.receiveTimeout = -1;
          return { socket, welcome: env, token };
        }
      }
    } catch (e) {
      if ((e as { code?: string }).code !== "EAGAIN") {
        socket.close();
        throw e;
      }
    }
    socket.close();
    if (Date.now() >= deadline) throw new NoWelcomeError(endpoint, opts.timeoutMs);
  }
}
