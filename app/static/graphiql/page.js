// GraphiQL at /graphql (gql/graphiql.html): Strawberry's page script, kept in a file of its own
// so that the page's Content-Security-Policy allows no inline script. Queries and mutations go
// to this URL over HTTP, subscriptions to the same URL over a websocket (graphql-transport-ws);
// the Headers tab's headers travel with both (for the websocket, in connection_init).
"use strict";

const EXAMPLE_QUERY = `# rendertrack's GraphQL API.
#
# 1. Put your API token in the Headers tab below:
#      {"Authorization": "Bearer rt_..."}
# 2. Load the schema: Shift-Ctrl-R, or the refresh
#    button on the left.
# 3. Run a query with Ctrl-Enter, or the play button:
#      { me { email role } }
#
# Subscriptions (jobUpdated, jobEvents) run over a
# websocket to this same URL, with the same headers.
`;

// The URL's parameters, for sharing a query: ?q=...&variables=...&headers=...
const parameters = {};

for (const entry of window.location.search.slice(1).split("&")) {
  const eq = entry.indexOf("=");
  if (eq >= 0) {
    parameters[decodeURIComponent(entry.slice(0, eq))] = decodeURIComponent(
      entry.slice(eq + 1),
    );
  }
}

function updateURL(data) {
  Object.assign(parameters, data);

  const newSearch =
    "?" +
    Object.keys(parameters)
      .filter(function (key) {
        return Boolean(parameters[key]);
      })
      .map(function (key) {
        return encodeURIComponent(key) + "=" + encodeURIComponent(parameters[key]);
      })
      .join("&");
  history.replaceState(null, null, newSearch);
}

const fetchURL = window.location.href.split("?")[0];

function httpUrlToWebSocketUrl(url) {
  const parsedURL = new URL(url);
  parsedURL.protocol = parsedURL.protocol === "http:" ? "ws:" : "wss:";
  parsedURL.hash = "";
  return parsedURL.toString();
}

const defaultHeaders = {};
const csrfToken = Cookies.get("csrftoken");

if (csrfToken) {
  defaultHeaders["x-csrftoken"] = csrfToken;
}

const fetcher = GraphiQL.createFetcher({
  url: fetchURL,
  headers: defaultHeaders,
  subscriptionUrl: httpUrlToWebSocketUrl(fetchURL),
});

function GraphiQLWithExplorer() {
  const [query, setQuery] = React.useState(parameters.q || EXAMPLE_QUERY);
  const [variables, setVariables] = React.useState(parameters.variables);
  const [headers, setHeaders] = React.useState(parameters.headers);

  function onEditQuery(newQuery) {
    setQuery(newQuery);
    updateURL({ q: newQuery });
  }

  function onEditVariables(newVariables) {
    setVariables(newVariables);
    updateURL({ variables: newVariables });
  }

  // Not written to the URL: the headers hold the API token.
  function onEditHeaders(newHeaders) {
    setHeaders(newHeaders);
  }

  const explorerPlugin = GraphiQLPluginExplorer.explorerPlugin();

  return React.createElement(GraphiQL, {
    fetcher: fetcher,
    defaultEditorToolsVisibility: true,
    plugins: [explorerPlugin],
    query: query,
    variables: variables,
    headers: headers,
    onEditQuery: onEditQuery,
    onEditVariables: onEditVariables,
    onEditHeaders: onEditHeaders,
    inputValueDeprecation: true,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: true,
    storage: window.sessionStorage,
  });
}

// GraphiQL keeps its editors, history and headers (the API token) in the tab's sessionStorage,
// like the dashboard: nothing outlives the tab. Earlier versions of this page used
// localStorage; what they left there is removed.
for (const key of Object.keys(window.localStorage)) {
  if (key.startsWith("graphiql:")) window.localStorage.removeItem(key);
}

const root = ReactDOM.createRoot(document.getElementById("graphiql"));
root.render(React.createElement(GraphiQLWithExplorer));
