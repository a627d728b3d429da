// The real @nexrender/worker, as a render node runs it, against a rendertrack server:
//
//   node -r ./shim.cjs worker.cjs <host> <secret>
//
// Environment: NEXRENDER_DIR (the installed packages), AERENDER_BINARY (the stand-in aerender;
// its folder holds Scripts/Startup/commandLineRenderer.jsx), NEXRENDER_WORKPATH, optionally
// NEXRENDER_TRAFFIC (a file: every request and answer, see packages.cjs) and WORKER_NAME.
// stdout: the worker's and core's own log. If the worker's loop ends (it does when a report it
// cannot do without fails), a last line `{"workerStopped": "<why>"}` and exit status 1.
'use strict';

const { requirePackage, recordTraffic } = require('./packages.cjs');

const [host, secret] = process.argv.slice(2);
if (!host || !secret || !process.env.AERENDER_BINARY || !process.env.NEXRENDER_WORKPATH) {
  console.error('usage: AERENDER_BINARY=... NEXRENDER_WORKPATH=... node -r ./shim.cjs worker.cjs <host> <secret>');
  process.exit(2);
}
if (process.env.NEXRENDER_TRAFFIC) {
  recordTraffic(process.env.NEXRENDER_TRAFFIC, process.env.WORKER_NAME || 'worker');
}

const { start } = requirePackage('@nexrender/worker');

start(host, secret, {
  binary: process.env.AERENDER_BINARY,
  workpath: process.env.NEXRENDER_WORKPATH,
  addLicense: false,
  noAnalytics: true,
  skipCleanup: true,
  stopOnError: false,
  polling: Number(process.env.NEXRENDER_WORKER_POLLING_MS || 500),
}).then(
  () => {
    console.log(JSON.stringify({ workerStopped: 'the loop ended' }));
    process.exit(1);
  },
  (error) => {
    console.log(JSON.stringify({ workerStopped: String((error && error.stack) || error) }));
    process.exit(1);
  },
);
