// The page's entry point: sign in (or reuse this tab's token), then run the dashboard.

import { NETWORK_ERROR, createApi } from "./api.js";
import { startDashboard } from "./app.js";
import { reconnectDelay } from "./backoff.js";
import { byId, setText } from "./dom.js";
import { ME } from "./queries.js";
import { SignInForm } from "./sign-in.js";
import { forgetToken, keepToken, storedToken } from "./session.js";

let running = null;
let retryTimer = null;
const signIn = new SignInForm((token) => begin(token, { typed: true }));

byId("sign-out").addEventListener("click", () => signOut(""));

/** Checks the token with the API, then shows the dashboard; a refused token says so. */
async function begin(token, { typed = false, attempt = 0 } = {}) {
  clearTimeout(retryTimer);
  const api = createApi(token);
  let me;
  try {
    ({ me } = await api(ME));
  } catch (error) {
    if (error.unauthenticated) {
      forgetToken();
      const message = `This token was not accepted: ${error.message}`;
      if (typed) signIn.showError(message);
      else signIn.show(message);
      return;
    }
    if (typed) {
      signIn.showError(`Could not sign in: ${error.message}`);
      return;
    }
    // A kept token while the server is away (a wall screen starting first): try again.
    const delay = reconnectDelay(attempt);
    const why = error.code === NETWORK_ERROR ? "The server cannot be reached" : error.message;
    signIn.show(`${why}; trying again in ${Math.round(delay / 1000)} s…`);
    retryTimer = setTimeout(() => begin(token, { attempt: attempt + 1 }), delay);
    return;
  }
  keepToken(token);
  signIn.hide();
  setText(byId("account-name"), `${me.name || me.email} · ${me.role}`);
  byId("account").hidden = false;
  byId("dashboard").hidden = false;
  document.body.dataset.role = me.role;
  running = startDashboard({ api, token, me, onSignedOut: (message) => signOut(message) });
}

function signOut(message) {
  clearTimeout(retryTimer);
  running?.stop();
  running = null;
  forgetToken();
  byId("account").hidden = true;
  byId("dashboard").hidden = true;
  delete document.body.dataset.role;
  signIn.show(message);
}

const kept = storedToken();
if (kept) begin(kept);
else signIn.show();
