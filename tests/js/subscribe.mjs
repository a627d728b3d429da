// Subscribes to one job's `jobUpdated` with the graphql-ws npm client, as a frontend would.
//
//   node subscribe.mjs <ws-url> <token> <job-id> [<count>]
//
// (or SUBSCRIBE_URL, SUBSCRIBE_TOKEN, SUBSCRIBE_JOB_ID, SUBSCRIBE_COUNT in the environment).
// stdout: one JSON line per event as it arrives, then {"complete": true} when the server
// completes the subscription. <count> > 0: exactly that many events must arrive before the
// completion. Any error (a refused token, a GraphQL error, a closed socket, too many or too few
// events, SUBSCRIBE_TIMEOUT_MS elapsed) is printed on stderr and the exit status is non-zero.
//
// The packages come from NPM_CLIENT_DIR (a folder holding node_modules; default: this one).

import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const packagesDir = resolve(process.env.NPM_CLIENT_DIR || dirname(fileURLToPath(import.meta.url)));
const require = createRequire(join(packagesDir, 'package.json'));
const { createClient } = require('graphql-ws');
const WebSocket = require('ws');

const [
  url = process.env.SUBSCRIBE_URL,
  token = process.env.SUBSCRIBE_TOKEN,
  jobId = process.env.SUBSCRIBE_JOB_ID,
  countArg = process.env.SUBSCRIBE_COUNT ?? '0',
] = process.argv.slice(2);
const expected = Number.parseInt(countArg, 10);
const timeoutMs = Number.parseInt(process.env.SUBSCRIBE_TIMEOUT_MS ?? '30000', 10);

const QUERY = `subscription($id: ID!) {
  jobUpdated(id: $id) { kind sequence previousStatus job { id status progress } }
}`;

// Resolves once the line is handed to the OS, so nothing is lost when the process exits.
function write(stream, line) {
  return new Promise((resolve) => stream.write(`${line}\n`, () => resolve()));
}

let finished = false;
async function finish(code, message) {
  if (finished) return;
  finished = true;
  if (message !== undefined) await write(process.stderr, message);
  process.exit(code);
}

function describe(error) {
  if (Array.isArray(error)) return `GraphQL errors: ${JSON.stringify(error)}`;
  if (error && typeof error === 'object' && 'code' in error && 'reason' in error) {
    return `the socket closed with code ${error.code}: ${error.reason || '(no reason)'}`;
  }
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return `error: ${JSON.stringify(error)}`;
}

if (!url || !token || !jobId || Number.isNaN(expected)) {
  await finish(2, 'usage: node subscribe.mjs <ws-url> <token> <job-id> [<count>]');
}

setTimeout(() => {
  finish(4, `timed out after ${timeoutMs} ms waiting for the subscription to complete`);
}, timeoutMs).unref();

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${token}` },
  // A refused token closes with 4403, which graphql-ws retries by default: fail at once instead.
  retryAttempts: 0,
});

let received = 0;
client.subscribe(
  { query: QUERY, variables: { id: jobId } },
  {
    next: async (result) => {
      if (result.errors?.length) {
        await finish(1, `GraphQL errors: ${JSON.stringify(result.errors)}`);
        return;
      }
      received += 1;
      if (expected > 0 && received > expected) {
        await finish(3, `expected ${expected} events, got more: ${JSON.stringify(result.data)}`);
        return;
      }
      await write(process.stdout, JSON.stringify(result.data.jobUpdated));
    },
    error: async (error) => {
      await finish(1, `subscription failed: ${describe(error)}`);
    },
    complete: async () => {
      if (expected > 0 && received !== expected) {
        await finish(3, `expected ${expected} events before completion, got ${received}`);
        return;
      }
      await write(process.stdout, JSON.stringify({ complete: true }));
      await client.dispose();
      await finish(0);
    },
  },
);
