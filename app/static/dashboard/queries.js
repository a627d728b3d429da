// The GraphQL documents the dashboard sends (schema.graphql at the repository's root).

export const PAGE_SIZE = 50;
export const HISTORY_PAGE = 50;
export const LOG_TAIL = 40;

const PERSON = "id email name";

/** What a row of the jobs table shows; events carry the same fields, so rows update in place. */
export const JOB_ROW = `
fragment JobRow on Job {
  id projectName outputName status stage priority progress queuePosition
  estimatedCompletionAt estimatedStartAt createdAt updatedAt sequence
  errorMessage cancelledReason allowedTransitions
  user { ${PERSON} }
  worker { ${PERSON} }
}`;

export const ME = `query Me { me { ${PERSON} role } }`;

export const JOBS = `
query Jobs($filter: JobFilter, $first: Int) {
  jobs(filter: $filter, first: $first) { totalCount edges { node { ...JobRow } } }
}
${JOB_ROW}`;

export const JOB_STATS = `
query JobStats {
  jobStats { pending validating queued rendering completed failed cancelled total }
}`;

export const WORKERS = `
query Workers {
  workers {
    worker { ${PERSON} isActive }
    heldJobs { id projectName outputName progress stage }
    lastHeartbeatAt lastSeenAt stalled
  }
}`;

const EVENT_FIELDS = `kind sequence cursor at previousStatus reason duty actor { ${PERSON} }`;

export const JOB_EVENTS = `
subscription JobEvents($after: String) {
  jobEvents(after: $after) { ${EVENT_FIELDS} job { ...JobRow } }
}
${JOB_ROW}`;

export const JOB_DETAIL = `
query JobDetail($id: ID!, $tail: Int!) {
  job(id: $id) {
    ...JobRow
    templatePath dataPath outputPath queuedAt startedAt completedAt heartbeatAt notBefore
    estimatedTime actualTime autoCancelAt attempts maxAttempts nexrenderJobId
    logs(tail: $tail)
  }
}
${JOB_ROW}`;

export const JOB_HISTORY = `
query JobHistory($id: ID!, $first: Int!, $after: String) {
  job(id: $id) {
    id
    events(first: $first, after: $after) {
      edges { node { ${EVENT_FIELDS} job { status progress stage priority } } }
      pageInfo { hasNextPage endCursor }
    }
  }
}`;

export const JOB_LOG = `
query JobLog($id: ID!, $tail: Int!) { job(id: $id) { id logs(tail: $tail) } }`;

export const CANCEL_JOB = `
mutation CancelJob($id: ID!, $reason: String!) {
  cancelJob(id: $id, reason: $reason) { ...JobRow }
}
${JOB_ROW}`;

export const RETRY_JOB = `
mutation RetryJob($id: ID!) { retryJob(id: $id) { ...JobRow } }
${JOB_ROW}`;

export const SET_JOB_PRIORITY = `
mutation SetJobPriority($id: ID!, $priority: Int!) {
  setJobPriority(id: $id, priority: $priority) { ...JobRow }
}
${JOB_ROW}`;
