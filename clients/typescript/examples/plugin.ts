// What an editor plugin does with zcoord: offer a tool only the editor can run, answer the
// approvals its user is asked for, and stream a turn's reply as it is written.
//
//   node dist/examples/plugin.js [--data-dir DIR] [--approve|--reject] [MESSAGE]
//
// It connects to the server of the current workspace (walking up like git), offers
// `editor_selection` (the text "selected" in this pretend editor), answers every approval with
// --approve (default) or --reject as its user would in a dialog, sends MESSAGE to a new session,
// prints the reply's tokens as they stream, then one line per tool call and approval, and leaves.
// Exit codes: 0 the turn completed, 1 it did not, 3 no server.

import { ApprovalDesk, CallTimeoutError, Client, DiscoveryError, ToolRunner } from "../src/index.js";

interface Args {
  dataDir?: string;
  decision: "approve" | "reject";
  message: string;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { decision: "approve", message: 'Explain the selection\n/tool editor_selection {"max_chars": 40}' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--data-dir") args.dataDir = argv[++i];
    else if (a === "--approve") args.decision = "approve";
    else if (a === "--reject") args.decision = "reject";
    else args.message = a;
  }
  return args;
}

/** The editor's side of the tool: what its user has selected. */
const SELECTION = "fn main() {\n    println!(\"hello\");\n}";

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  let client: Client;
  try {
    client = await Client.connect({ dataDir: args.dataDir });
  } catch (e) {
    if (e instanceof DiscoveryError || e instanceof CallTimeoutError) {
      console.error(`no server: ${e.message}`);
      return 3;
    }
    throw e;
  }
  const log: string[] = [];
  // 1. Offer the tool (client.hello), staying present while the plugin runs.
  const runner = await ToolRunner.start(client, {
    clientId: `plugin-example-${process.pid}`,
    name: "Example editor plugin",
    version: "1.0.0",
    tools: [
      {
        name: "editor_selection",
        description: "The text selected in the user's editor",
        parameters: { type: "object", properties: { max_chars: { type: "integer" } } },
        run: (input) => SELECTION.slice(0, (input as { max_chars?: number }).max_chars ?? SELECTION.length),
      },
    ],
    onCall: (c) => log.push(`tool ${c.tool_name} ${c.call_id}: ${c.outcome}`),
  });
  // 2. Answer approvals as the user would in a dialog.
  const desk = await ApprovalDesk.start(
    client,
    (request) => {
      if (request.type === "question") return { answer: "yes" };
      return args.decision === "approve" ? { decision: "approve" } : { decision: "reject", reason: "the user said no" };
    },
    { onOutcome: (o) => log.push(`approval ${o.request.payload.tool_name ?? o.request.type}: ${o.outcome} (${o.resolved?.status ?? "?"})`) },
  );
  try {
    // 3. Send, and stream the reply as it is written.
    const turn = await client.send(args.message);
    for await (const token of turn.tokens()) process.stdout.write(token);
    process.stdout.write("\n");
    const { end } = await turn.result();
    for (const line of log) console.log(line);
    console.log(`turn ${end.reason}`);
    return end.reason === "completed" ? 0 : 1;
  } finally {
    await desk.close();
    await runner.stop(); // client.goodbye
    await client.close();
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  },
);
