#!/usr/bin/env node
// A stand-in for After Effects' `aerender`, enough for @nexrender/core to render with:
//
//   aerender -project <work>/<uid>/template.aep -comp <comp> -output <file> [-r <script.jsx>] ...
//
// It prints what core reads from the real one: `Start:` and `Duration:` (4 seconds), then a
// PROGRESS line per second of the composition (25, 50, 75, 100 %), each followed by a line that
// does not match (core's progress regex keeps state across chunks), then writes -output.
// Environment: AERENDER_SECONDS (how long the whole render takes, default 1), AERENDER_FAIL=1
// (after the first progress line, print `aerender Error: <AERENDER_ERROR>` and exit 1 with no
// output file), AERENDER_ARGS_LOG (a file: its arguments are appended as one JSON line).
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';

const argv = process.argv.slice(2);
const flag = (name) => {
  const at = argv.indexOf(name);
  return at >= 0 ? argv[at + 1] : undefined;
};
const project = flag('-project');
const comp = flag('-comp');
const output = flag('-output');
const seconds = Number(process.env.AERENDER_SECONDS || 1);
const fail = process.env.AERENDER_FAIL === '1';
const errorText = process.env.AERENDER_ERROR || 'After Effects error: the stand-in was told to fail';

if (process.env.AERENDER_ARGS_LOG) {
  appendFileSync(process.env.AERENDER_ARGS_LOG, `${JSON.stringify(argv)}\n`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// One write per chunk: a pause after each, so that core sees every line on its own.
const say = async (line) => {
  await new Promise((resolve) => process.stdout.write(`${line}\n`, resolve));
  await sleep(30);
};

await say('aerender version 24.0x00 (rendertrack stand-in)');
if (!project || !comp || !output || !existsSync(project)) {
  await say(`aerender Error: Unable to open project ${project} (comp ${comp}, output ${output})`);
  process.exit(1);
}
await say(`PROGRESS:  ${new Date().toString()} Starting composition "${comp}".`);
await say('PROGRESS:  Start: 0:00:00:00');
await say('PROGRESS:  Duration: 0:00:04:00');
await say('PROGRESS:  Frame Rate: 24.00 (comp)');

const steps = 4;
for (let step = 1; step <= steps; step += 1) {
  await sleep((seconds * 1000) / steps);
  await say(`PROGRESS:  0:00:0${step}:00 (${step * 24}): 0 Seconds`);
  await say(`PROGRESS:  rendered ${step * 24} of ${steps * 24} frames`);
  if (fail) {
    await say(`aerender Error: ${errorText}`);
    process.exit(1);
  }
}
writeFileSync(output, Buffer.alloc(4096, 'x'));
await say(`PROGRESS:  Total Time Elapsed: ${seconds} Seconds`);
