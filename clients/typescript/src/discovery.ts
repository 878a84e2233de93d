// Finding a server: the data directory (the same lookup as the zcoord CLI, PROTOCOL §1, plus a
// walk up from the current directory like git's), the discovery file it holds, and the endpoints
// and PLAIN secret a client connects with. Reads files and the environment; opens no socket.

import { existsSync, readFileSync, realpathSync } from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";

import type { Endpoints } from "./generated/types.js";
import { DiscoveryError } from "./errors.js";

export const DISCOVERY_FILE = "instance.json";

/** The discovery file `zcoord serve` writes into its data directory (PROTOCOL §1). */
export interface DiscoveryFile {
  instance_id: string;
  pid: number;
  endpoints: Endpoints;
  started_at: string;
  protocol_version: number;
  version: string;
  /** The PLAIN secret, present when an endpoint is tcp. */
  secret?: string;
  /** The server's CURVE public key, present when tcp peers must use CURVE. */
  curve_public_key?: string;
}

export interface DiscoveryOptions {
  /** The data directory itself (like `--data-dir`); wins over everything else. */
  dataDir?: string;
  /** The workspace whose data directory to use (like `--workspace`); no walk-up then. */
  workspace?: string;
  /** Where the walk-up starts; default `process.cwd()`. */
  cwd?: string;
  /** The environment to read `ZCOORD_*`, `XDG_DATA_HOME` and `HOME` from; default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

/** Where to connect, and how. */
export interface Target {
  rpc: string;
  pub: string;
  /** The PLAIN password for tcp endpoints: `$ZCOORD_SECRET`, else the discovery file's. */
  secret?: string;
  /** The data directory the endpoints came from, when they came from a discovery file. */
  dataDir?: string;
  /** The instance the discovery file names (a restart changes it). */
  instanceId?: string;
}

/** `$XDG_DATA_HOME/zcoord`, else `~/.local/share/zcoord`, else `./.zcoord` (as the server). */
export function dataHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.XDG_DATA_HOME) return join(env.XDG_DATA_HOME, "zcoord");
  const home = env.HOME ?? homedir();
  if (home) return join(home, ".local/share/zcoord");
  return ".zcoord";
}

/** FNV-1a, 64 bits, as 16 lowercase hex digits: the hash the server names workspaces by. */
export function fnv1a64Hex(bytes: Uint8Array): string {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(16).padStart(16, "0");
}

/** A workspace's data directory: `<data home>/workspaces/<name>-<hash>`, where the hash is of
 * the workspace's absolute path with symlinks resolved, and the name is its last component with
 * characters outside `[A-Za-z0-9_-]` replaced by `_`, at most 16 characters. */
export function workspaceDataDir(workspace: string, env: NodeJS.ProcessEnv = process.env): string {
  const abs = realpathSync(workspace);
  const last = basename(abs) || "root";
  const name = Array.from(last, (c) => (/^[A-Za-z0-9_-]$/.test(c) ? c : "_"))
    .slice(0, 16)
    .join("");
  return join(dataHome(env), "workspaces", `${name}-${fnv1a64Hex(Buffer.from(abs, "utf8"))}`);
}

/** Whether a process with this pid exists (a signal-0 probe; a process of another user counts). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The discovery file at `path`, or undefined when there is none or it is not one. */
export function readDiscovery(path: string): DiscoveryFile | undefined {
  let raw: string;
  try {
    raw = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  try {
    const d = JSON.parse(raw) as DiscoveryFile;
    if (d && typeof d === "object" && d.endpoints && typeof d.endpoints.rpc === "string") return d;
  } catch {
    // A file being replaced is renamed into place atomically, so this is not a torn write.
  }
  return undefined;
}

/** The data directory, in the CLI's order: `dataDir`, `$ZCOORD_DATA_DIR`, the workspace's
 * (`workspace`, `$ZCOORD_WORKSPACE`); without any of those, the nearest directory from `cwd` up
 * (cwd included) whose data directory holds an `instance.json` whose pid is alive, else cwd's. */
export function resolveDataDir(opts: DiscoveryOptions = {}): string {
  const env = opts.env ?? process.env;
  if (opts.dataDir) return resolve(opts.dataDir);
  if (env.ZCOORD_DATA_DIR) return resolve(env.ZCOORD_DATA_DIR);
  const workspace = opts.workspace ?? env.ZCOORD_WORKSPACE;
  if (workspace) return workspaceDataDir(workspace, env);
  const cwd = realpathSync(opts.cwd ?? process.cwd());
  for (let dir = cwd; ; dir = dirname(dir)) {
    const candidate = workspaceDataDir(dir, env);
    const d = readDiscovery(join(candidate, DISCOVERY_FILE));
    if (d && pidAlive(d.pid)) return candidate;
    if (dirname(dir) === dir) break;
  }
  return workspaceDataDir(cwd, env);
}

export interface TargetOptions extends DiscoveryOptions {
  /** Explicit endpoints (like `--rpc/--pub`, or `$ZCOORD_RPC/$ZCOORD_PUB`): no discovery file
   * is needed then, though its secret is still used when there is one. */
  rpc?: string;
  pub?: string;
  /** The PLAIN secret; default `$ZCOORD_SECRET`, else the discovery file's. */
  secret?: string;
}

/** Resolves where to connect. Throws `DiscoveryError` when there is no usable server. */
export function resolveTarget(opts: TargetOptions = {}): Target {
  const env = opts.env ?? process.env;
  const rpc = opts.rpc ?? env.ZCOORD_RPC;
  const pub = opts.pub ?? env.ZCOORD_PUB;
  const envSecret = opts.secret ?? (env.ZCOORD_SECRET || undefined);
  if (rpc && pub) {
    let secret = envSecret;
    if (!secret) {
      // The file is read only for its secret, and only if there is one to read.
      try {
        secret = readDiscovery(join(resolveDataDir(opts), DISCOVERY_FILE))?.secret;
      } catch {
        secret = undefined;
      }
    }
    return { rpc, pub, secret };
  }
  const dataDir = resolveDataDir(opts);
  const path = join(dataDir, DISCOVERY_FILE);
  if (!existsSync(path)) {
    throw new DiscoveryError(`no discovery file at ${path} (is \`zcoord serve\` running? or pass rpc/pub)`, path);
  }
  const d = readDiscovery(path);
  if (!d) throw new DiscoveryError(`discovery file ${path} is not valid`, path);
  if (!pidAlive(d.pid)) {
    throw new DiscoveryError(
      `the discovery file ${path} is stale: instance ${d.instance_id} (pid ${d.pid}) is not running`,
      path,
    );
  }
  if (d.curve_public_key) {
    throw new DiscoveryError(
      `the server in ${path} speaks CURVE (serve --curve or --allow-remote); this client speaks PLAIN only`,
      path,
    );
  }
  return {
    rpc: rpc ?? d.endpoints.rpc,
    pub: pub ?? d.endpoints.pub,
    secret: envSecret ?? d.secret,
    dataDir,
    instanceId: d.instance_id,
  };
}
