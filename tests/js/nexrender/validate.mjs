// @nexrender/types' validate() on job JSON:
//
//   node validate.mjs < jobs.json      (a JSON list of job objects)
//
// stdout: one JSON line per job, {"index": i, "uid": ..., "ok": true} or {..., "ok": false,
// "error": "<what validate() threw>"}; exit status 0 once every job was judged.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { requirePackage } = require('./packages.cjs');
const { validate } = requirePackage('@nexrender/types/job');

const jobs = JSON.parse(readFileSync(0, 'utf8'));
const lines = jobs.map((job, index) => {
  try {
    return { index, uid: job?.uid, ok: validate(job) === true };
  } catch (error) {
    return { index, uid: job?.uid, ok: false, error: `${error.name}: ${error.message}` };
  }
});
process.stdout.write(lines.map((line) => `${JSON.stringify(line)}\n`).join(''));
