// The signed-in dashboard: wires the API, the live connection and the views together.
//
// Gap-free by construction: the jobEvents subscription is sent before the jobs are read, the
// read's answer and the stream's changes are merged newest-wins (JobsModel), and after a lost
// connection the stream resumes after the last event handled (LiveFeed).

import { byId } from "./dom.js";
import { Filters } from "./filters.js";
import { JobActions } from "./job-actions.js";
import { JobDetail } from "./job-detail.js";
import { JobsModel } from "./jobs-model.js";
import { JobsTable } from "./jobs-table.js";
import { LiveConnection, graphqlSocketUrl } from "./graphql-ws.js";
import { LiveFeed } from "./live-feed.js";
import { clearNotices, hideConnectionState, notify, showConnectionState } from "./notices.js";
import { isAdmin } from "./permissions.js";
import { JOBS, ME, PAGE_SIZE } from "./queries.js";
import { coalesced, every } from "./schedule.js";
import { StatsBar } from "./stats-bar.js";
import { refreshRelativeTimes } from "./time.js";
import { WorkersPanel } from "./workers-panel.js";

const STATS_DELAY_MS = 400;
// Queue positions and estimates of the other rows move when a job is claimed or finishes.
const ROWS_AFTER_CHANGE_DELAY_MS = 1_500;
const ROWS_EVERY_MS = 20_000;
const CLOCK_EVERY_MS = 1_000;
// Changes that move counts, queue positions and estimates (not progress or log lines).
const SHAPE_CHANGES = new Set(["CREATED", "STATUS_CHANGED", "PRIORITY_CHANGED"]);

/**
 * Starts the dashboard for `me`. `onSignedOut(message)` is called when the server no longer
 * accepts the token. Returns { stop }.
 */
export function startDashboard({ api, token, me, onSignedOut }) {
  const stoppers = [];
  let stopped = false;
  const listeners = new AbortController(); // every listener on the page's fixed elements
  const signal = listeners.signal;

  const model = new JobsModel((change) => table.apply(change, model.ordered(), model.totalCount));
  const detail = new JobDetail({
    api,
    notify,
    onOpen: (id) => table.select(id),
    onClose: () => table.select(null),
    signal,
  });
  const actions = new JobActions({
    api,
    notify,
    signal,
    onJob: (job) => {
      model.applyChange(job);
      detail.applyJob(job);
      refreshStats();
      refreshRows();
    },
  });
  const table = new JobsTable({
    head: byId("jobs-head"),
    body: byId("jobs-body"),
    empty: byId("jobs-empty"),
    count: byId("jobs-count"),
    me,
    actions,
    onOpen: (id) => detail.open(id),
  });
  const stats = new StatsBar(byId("stats"), api);
  const workers = isAdmin(me)
    ? new WorkersPanel({
        api,
        panel: byId("workers-panel"),
        list: byId("workers-list"),
        error: byId("workers-error"),
        updated: byId("workers-updated"),
      })
    : null;
  new Filters({
    fieldset: byId("status-filter"),
    search: byId("search-input"),
    onChange: (filter) => {
      model.setFilter(filter);
      loadRows.now();
    },
    signal,
  });

  let readsSent = 0;
  let latestReadApplied = 0;
  async function readRows() {
    const read = ++readsSent;
    const sentAt = performance.now();
    const filter = model.queryFilter();
    if (filter.status && filter.status.length === 0) {
      latestReadApplied = read;
      model.applyList([], 0, sentAt);
      return;
    }
    const data = await api(JOBS, { filter, first: PAGE_SIZE });
    if (stopped || read < latestReadApplied) return; // a later read answered first
    latestReadApplied = read;
    model.applyList(
      data.jobs.edges.map((edge) => edge.node),
      data.jobs.totalCount,
      sentAt,
    );
  }
  const loadRows = coalesced(readRows, 0);
  const refreshRows = coalesced(readRows, ROWS_AFTER_CHANGE_DELAY_MS);
  const refreshStats = coalesced(() => stats.refresh(), STATS_DELAY_MS);

  const connection = new LiveConnection({
    url: graphqlSocketUrl(),
    token,
    onState: (state) => connectionChanged(state),
  });
  const feed = new LiveFeed({
    connection,
    onEvent: (event) => {
      model.applyChange(event.job);
      detail.handleEvent(event);
      workers?.handleEvent(event);
      if (SHAPE_CHANGES.has(event.kind)) {
        refreshStats();
        refreshRows();
      }
    },
    onResync: () => {
      loadRows.now();
      refreshStats.now();
      if (detail.id !== null) detail.open(detail.id); // its history may have a gap too
    },
    onError: (message) => notify(`Live updates were refused: ${message}`),
  });

  let everConnected = false;
  let down = false;
  async function connectionChanged(state) {
    if (stopped) return;
    showConnectionState(state);
    if (state.phase === "open") {
      const reconnected = down;
      down = false;
      if (!everConnected) {
        everConnected = true;
        loadRows.now(); // again, now that the stream is on: nothing falls in between
      }
      feed.connected({ reconnected });
      if (reconnected) {
        refreshStats.now();
        refreshRows();
        workers?.refresh();
      }
    } else if (state.phase === "reconnecting" || state.phase === "refused") {
      down = true;
    }
    if (state.phase === "refused") await checkToken(state.reason);
  }

  /** After a refused websocket: sign out if the token is the reason, else keep retrying. */
  async function checkToken(reason) {
    try {
      await api(ME);
    } catch (error) {
      if (error.unauthenticated) {
        stop();
        onSignedOut(`Signed out: ${reason || error.message}`);
      }
    }
  }

  function stop() {
    if (stopped) return;
    stopped = true;
    feed.stop();
    connection.stop();
    workers?.stop();
    actions.close();
    detail.close();
    loadRows.cancel();
    refreshRows.cancel();
    refreshStats.cancel();
    for (const stopper of stoppers) stopper();
    listeners.abort();
    model.clear();
    hideConnectionState();
    clearNotices();
  }

  connection.start();
  feed.start();
  loadRows.now();
  refreshStats.now();
  workers?.start();
  stoppers.push(every(CLOCK_EVERY_MS, () => refreshRelativeTimes()));
  stoppers.push(
    every(ROWS_EVERY_MS, () => {
      refreshRows();
      refreshStats();
    }),
  );
  return { stop };
}
