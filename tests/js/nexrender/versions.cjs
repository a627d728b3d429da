// The versions of the Nexrender packages as each one resolves the others (what actually runs):
//   node versions.cjs   ->  one JSON line
'use strict';

const { createRequire } = require('module');
const { requirePackage } = require('./packages.cjs');

const from = (name) => createRequire(requirePackage.resolve(name));
const version = (require, name) => require(`${name}/package.json`).version;

process.stdout.write(`${JSON.stringify({
  '@nexrender/api': version(requirePackage, '@nexrender/api'),
  '@nexrender/types': version(requirePackage, '@nexrender/types'),
  '@nexrender/worker': version(requirePackage, '@nexrender/worker'),
  '@nexrender/core': version(requirePackage, '@nexrender/core'),
  'worker -> @nexrender/core': version(from('@nexrender/worker'), '@nexrender/core'),
  'worker -> @nexrender/api': version(from('@nexrender/worker'), '@nexrender/api'),
  'core -> @nexrender/types': version(from('@nexrender/core'), '@nexrender/types'),
  'api -> @nexrender/types': version(from('@nexrender/api'), '@nexrender/types'),
  'api -> node-fetch': version(from('@nexrender/api'), 'node-fetch'),
})}\n`);
