// Drives @nexrender/api's createClient as a tool or a worker would, one command at a time:
//
//   node api.mjs <host>
//
// stdin: one JSON command per line, {"id": n, "client": "<name>", "op": "<method>", "args": [...]}:
//   op "client" with args [secret]: creates the client <name> (createClient({host, secret, polling}));
//   op "addJob", "listJobs", "fetchJob", "pickupJob", "updateJob", "removeJob", "resumeJob": calls
//   that method of client <name> with args.
// stdout: one JSON line per command, {"id": n, "ok": true, "result": ...} or {"id": n, "ok":
// false, "error": "<the message the client threw>"} (for a refused request: the answer's body).
// addJob and resumeJob resolve to the emitter; their result is the job it starts from, and every
// event the emitter emits afterwards is a line {"event": "<name>", "uid", "state",
// "renderProgress", "progress", "error", "failure"} (it polls /jobs/:uid/status every
// NEXRENDER_JOB_POLLING_MS, default 200 ms, until `finished` or `error`; `failure`: why a poll
// failed, for the emitter's own `error`).
// NEXRENDER_TRAFFIC (a file): every request and answer, see packages.cjs. The process ends when
// stdin closes.
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { requirePackage, recordTraffic } = require('./packages.cjs');

const host = process.argv[2] || process.env.NEXRENDER_HOST;
if (!host) {
  process.stderr.write('usage: node api.mjs <host>\n');
  process.exit(2);
}
if (process.env.NEXRENDER_TRAFFIC) recordTraffic(process.env.NEXRENDER_TRAFFIC, 'api');
const { createClient } = requirePackage('@nexrender/api');
const polling = Number(process.env.NEXRENDER_JOB_POLLING_MS || 200);

const write = (value) =>
  new Promise((resolve) => process.stdout.write(`${JSON.stringify(value)}\n`, resolve));

const clients = new Map();
const METHODS = new Set([
  'addJob', 'listJobs', 'fetchJob', 'pickupJob', 'updateJob', 'removeJob', 'resumeJob',
]);

// The emitter of addJob/resumeJob: every event it emits becomes a line; resolves to the job it
// starts from (its first event, `created`, carries it).
function follow(emitter) {
  emitter.on('error', () => {}); // reported as a line below; an unheard 'error' would throw
  const emit = emitter.emit.bind(emitter);
  return new Promise((resolve) => {
    emitter.emit = (name, ...args) => {
      const [job, extra] = args;
      if (name === 'created') {
        resolve(job);
      } else {
        // `error` is both the event of the state `error` (with the job) and the emitter's own
        // failure to poll (with an Error): `failure` tells them apart.
        const failure = job instanceof Error ? job.message : undefined;
        write({
          event: name,
          uid: job?.uid,
          state: job?.state,
          renderProgress: job?.renderProgress,
          progress: name === 'progress' ? extra : undefined,
          error: failure === undefined ? job?.error : undefined,
          failure,
        });
      }
      return emit(name, ...args);
    };
  });
}

async function run(command) {
  const { client: name, op, args = [] } = command;
  if (op === 'client') {
    clients.set(name, createClient({ host, secret: args[0], polling }));
    return null;
  }
  if (!METHODS.has(op)) throw new Error(`unknown op ${op}`);
  const client = clients.get(name);
  if (!client) throw new Error(`no client named ${name}`);
  const result = await client[op](...args);
  if (op === 'addJob' || op === 'resumeJob') return follow(result);
  return result;
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let command;
  try {
    command = JSON.parse(line);
  } catch (error) {
    await write({ id: null, ok: false, error: `not JSON: ${line}` });
    continue;
  }
  try {
    await write({ id: command.id, ok: true, result: (await run(command)) ?? null });
  } catch (error) {
    await write({ id: command.id, ok: false, error: error instanceof Error ? error.message : String(error) });
  }
}
process.exit(0);
