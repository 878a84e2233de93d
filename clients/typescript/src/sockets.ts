// How this client's sockets are made: linger 0, and ZeroMQ PLAIN credentials over tcp
// (PROTOCOL §1: user "zcoord", password the instance's secret, set before connect).

import { Dealer, Subscriber } from "zeromq";

import { ZcoordError } from "./errors.js";

export const PLAIN_USERNAME = "zcoord";

/** The security options for a socket that will connect to `endpoint`: PLAIN over tcp (where the
 * server requires it), nothing over ipc (the 0700 socket directory keeps others out). */
export function securityFor(endpoint: string, secret: string | undefined): { plainUsername?: string; plainPassword?: string } {
  if (!endpoint.startsWith("tcp://")) return {};
  if (!secret) {
    throw new ZcoordError(
      `${endpoint} is tcp, which needs the instance's secret (PLAIN): set $ZCOORD_SECRET or read it from the discovery file`,
    );
  }
  return { plainUsername: PLAIN_USERNAME, plainPassword: secret };
}

export function dealerFor(endpoint: string, secret: string | undefined): Dealer {
  const sock = new Dealer({ linger: 0, ...securityFor(endpoint, secret) });
  sock.connect(endpoint);
  return sock;
}

/** A SUB for `endpoint`, not yet connected, so that subscriptions can be made first. A big
 * receive queue: events pile up there while a snapshot or a replay is being fetched, and what
 * does not fit is lost (and costs a repair). */
export function subscriberFor(endpoint: string, secret: string | undefined): Subscriber {
  return new Subscriber({ linger: 0, receiveHighWaterMark: 100_000, ...securityFor(endpoint, secret) });
}
