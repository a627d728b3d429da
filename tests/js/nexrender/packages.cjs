// Loads the pinned Nexrender packages from NEXRENDER_DIR (the folder whose node_modules the test
// installed: .cache/npm-nexrender), and records what a @nexrender/api client says to the server.
//
// recordTraffic(file, who): every request a @nexrender/api client sends from now on, and the
// answer it gets, is appended to `file` as one JSON line: {who, method, url, request, status,
// response} (bodies as text), or {who, method, url, request, failure} when no answer came. The
// client calls node-fetch's `default` export when it has one, so wrapping that export sees all.
'use strict';

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const dir = path.resolve(process.env.NEXRENDER_DIR || __dirname);
const requirePackage = createRequire(path.join(dir, 'package.json'));

function recordTraffic(file, who) {
  // node-fetch as @nexrender/api itself resolves it (the very module object it calls).
  const requireFromApi = createRequire(requirePackage.resolve('@nexrender/api'));
  const fetchModule = requireFromApi('node-fetch');
  const original = fetchModule.default || fetchModule;
  const record = (entry) => fs.appendFileSync(file, `${JSON.stringify({ who, ...entry })}\n`);

  fetchModule.default = async (url, options = {}) => {
    const method = (options.method || 'GET').toUpperCase();
    const request = options.body === undefined ? null : String(options.body);
    let response;
    try {
      response = await original(url, options);
    } catch (error) {
      record({ method, url: String(url), request, failure: String(error) });
      throw error;
    }
    const text = await response.text();
    record({ method, url: String(url), request, status: response.status, response: text });
    return new original.Response(text, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
}

module.exports = { requirePackage, recordTraffic };
