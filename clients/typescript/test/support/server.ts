// Test support: a real zcoord server per test file (the binary from $ZCOORD_BIN, default the
// repository's target/debug/zcoord), in a temp dir over ipc or on loopback tcp with PLAIN, and
// waits that always end.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before } from "node:test";

import { Client } from "../../src/client.js";

import type { DiscoveryFile } from "../../src/discovery.js";

/** The repository root: this file runs from clients/typescript/dist/test/support/. */
export const REPO_ROOT = resolve(fileURLToPath(new URL("../../../../../", import.meta.url)));
export const PACKAGE_ROOT = resolve(REPO_ROOT, "clients/typescript");
export const BIN = process.env.ZCOORD_BIN ? resolve(process.env.ZCOORD_BIN) : join(REPO_ROOT, "target/debug/zcoord");

export function tempDir(label = "t"): string {
  return mkdtempSync(join(tmpdir(), `zc-ts-${label}-`));
}

/** Polls `check` every 20 ms until it returns a value, for at most `timeoutMs`. */
export async function until<T>(what: string, timeoutMs: number, check: () => T | undefined | false): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Rejects after `ms` unless `p` settles first. */
export function within<T>(ms: number, p: Promise<T>, what = "operation"): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]);
}

export interface ServerOptions {
  /** Extra `serve` flags. */
  args?: string[];
  /** Bind loopback tcp (PLAIN) instead of ipc. */
  tcp?: boolean;
  /** The data directory; default a fresh temp dir. `null`: pass none (the workspace decides). */
  dataDir?: string | null;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Default `memory`. */
  store?: "memory" | "sqlite";
  /** Where its discovery file will appear when `dataDir` is null: found by this, once it is. */
  findDataDir?: () => string | undefined;
}

export class Server {
  private output = "";
  exited: Promise<number | null>;

  private constructor(
    readonly proc: ChildProcess,
    readonly dataDir: string,
    readonly discovery: DiscoveryFile,
  ) {
    this.exited = new Promise((r) => {
      if (proc.exitCode !== null) r(proc.exitCode);
      else proc.once("exit", (code) => r(code));
    });
  }

  static async start(opts: ServerOptions = {}): Promise<Server> {
    let dataDir = opts.dataDir === null ? undefined : (opts.dataDir ?? tempDir("srv"));
    const args = ["serve", "--heartbeat-interval", "1", "--store", opts.store ?? "memory"];
    if (dataDir !== undefined) args.push("--data-dir", dataDir);
    if (opts.tcp) args.push("--rpc", "tcp://127.0.0.1:0", "--pub", "tcp://127.0.0.1:0");
    args.push(...(opts.args ?? []));
    const proc = spawn(BIN, args, {
      cwd: opts.cwd,
      env: { ...process.env, RUST_LOG: "warn", ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    proc.stdout!.on("data", (b: Buffer) => (output += b.toString()));
    proc.stderr!.on("data", (b: Buffer) => (output += b.toString()));
    try {
      const discovery = await until(`instance.json from pid ${proc.pid}`, 15_000, () => {
        if (proc.exitCode !== null) throw new Error(`zcoord serve exited ${proc.exitCode}: ${output}`);
        dataDir ??= opts.findDataDir?.();
        if (!dataDir) return undefined;
        const path = join(dataDir, "instance.json");
        if (!existsSync(path)) return undefined;
        try {
          const d = JSON.parse(readFileSync(path, "utf8")) as DiscoveryFile;
          return d.pid === proc.pid ? d : undefined;
        } catch {
          return undefined;
        }
      });
      const server = new Server(proc, dataDir!, discovery);
      server.output = output;
      proc.stdout!.on("data", (b: Buffer) => (server.output += b.toString()));
      proc.stderr!.on("data", (b: Buffer) => (server.output += b.toString()));
      return server;
    } catch (e) {
      proc.kill("SIGKILL");
      throw e;
    }
  }

  /** A server started in `workspace` without `--data-dir`: it picks its own data directory
   * under `env.XDG_DATA_HOME` (which should be empty), found here by listing it. */
  static startInWorkspace(workspace: string, env: { XDG_DATA_HOME: string } & NodeJS.ProcessEnv): Promise<Server> {
    const wsRoot = join(env.XDG_DATA_HOME, "zcoord", "workspaces");
    return Server.start({
      dataDir: null,
      cwd: workspace,
      env,
      findDataDir: () => {
        try {
          const names = readdirSync(wsRoot);
          return names.length === 1 ? join(wsRoot, names[0]) : undefined;
        } catch {
          return undefined;
        }
      },
    });
  }

  get log(): string {
    return this.output;
  }

  /** SIGTERM, then SIGKILL if it has not exited within 5 s. Resolves with the exit code. */
  async stop(opts: { removeDataDir?: boolean } = {}): Promise<number | null> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGTERM");
    let code: number | null;
    try {
      code = await within(5000, this.exited, "server exit");
    } catch {
      this.proc.kill("SIGKILL");
      code = await this.exited;
    }
    if (opts.removeDataDir) rmSync(this.dataDir, { recursive: true, force: true });
    return code;
  }
}

/** Registers before/after hooks that start a server (with `opts`) and a client connected to it
 * for the enclosing suite, handing both to `use`, and stop them at the end. */
export function serverAndClient(opts: ServerOptions, use: (server: Server, client: Client) => void): void {
  let server: Server | undefined;
  let client: Client | undefined;
  before(async () => {
    server = await Server.start(opts);
    client = await Client.connect({ dataDir: server.dataDir });
    use(server, client);
  });
  after(async () => {
    await client?.close();
    await server?.stop();
  });
}
